"""
llama.cpp's own model quantiser (llama-quantize, no importance matrix), called through
ctypes on the libllama of node-llama-cpp's prebuilt CPU build (see foreign-files.mjs,
which runs this). No third-party Python packages. The parameter struct is llama.h's
llama_model_quantize_params as node-llama-cpp 3.22.1's llama.cpp declares it.

    python3 llama_quantize.py LIBDIR IN.gguf OUT.gguf FTYPE

FTYPE is a llama_ftype (2 Q4_0, 3 Q4_1, 10 Q2_K, 12 Q3_K_M, 25 IQ4_NL, 30 IQ4_XS, ...).
"""
import ctypes
import glob
import os
import sys

libdir, src, dst, ftype = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def load(pattern, mode=ctypes.DEFAULT_MODE):
    found = sorted(glob.glob(os.path.join(libdir, pattern)))
    if not found:
        sys.exit(f'no {pattern} in {libdir}')
    return ctypes.CDLL(found[0], mode=mode)


load('libggml-base.so', ctypes.RTLD_GLOBAL)
load('libggml.*so', ctypes.RTLD_GLOBAL)
lib = load('libllama.*so')


class Params(ctypes.Structure):
    _fields_ = [('nthread', ctypes.c_int32), ('ftype', ctypes.c_int), ('output_tensor_type', ctypes.c_int),
                ('token_embedding_type', ctypes.c_int), ('allow_requantize', ctypes.c_bool),
                ('quantize_output_tensor', ctypes.c_bool), ('only_copy', ctypes.c_bool), ('pure', ctypes.c_bool),
                ('keep_split', ctypes.c_bool), ('dry_run', ctypes.c_bool), ('imatrix', ctypes.c_void_p),
                ('kv_overrides', ctypes.c_void_p), ('tt_overrides', ctypes.c_void_p), ('prune_layers', ctypes.c_void_p),
                ('max_buf_size', ctypes.c_size_t)]


lib.llama_model_quantize_default_params.restype = Params
lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(Params)]
lib.llama_backend_init()
params = lib.llama_model_quantize_default_params()
params.ftype = ftype
sys.exit(lib.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))
