"""
llama.cpp's own quantisers and dequantisers, called through ctypes on the libggml-base.so
that node-llama-cpp ships (see compare-quantizers.mjs, which runs this). No third-party
Python packages.

    python3 ggml_quantize.py LIBDIR WORKDIR TYPE_ID N_PER_ROW

Reads WORKDIR/x.f32 (rows of N_PER_ROW values) and, when there, WORKDIR/ours.bin (this
project's quantisation of it); writes WORKDIR/theirs.bin (ggml_quantize_chunk, no
importance matrix, as llama-quantize without --imatrix) and WORKDIR/theirs.deq.f32 (read
back with ggml's to_float), and WORKDIR/ours.deq.f32 the same way for ours.bin.
"""
import ctypes
import os
import sys

libdir, work, type_id, n_per_row = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lib = ctypes.CDLL(os.path.join(libdir, 'libggml-base.so'))


class Traits(ctypes.Structure):
    _fields_ = [('type_name', ctypes.c_char_p), ('blck_size', ctypes.c_int64), ('blck_size_interleave', ctypes.c_int64),
                ('type_size', ctypes.c_size_t), ('is_quantized', ctypes.c_bool), ('to_float', ctypes.c_void_p),
                ('from_float_ref', ctypes.c_void_p)]


lib.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
lib.ggml_quantize_chunk.restype = ctypes.c_size_t
lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                    ctypes.c_int64, ctypes.c_void_p]
traits = lib.ggml_get_type_traits(type_id).contents
to_float = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(traits.to_float)

with open(os.path.join(work, 'x.f32'), 'rb') as f:
    x = f.read()
n = len(x) // 4
rows = n // n_per_row
size = n // traits.blck_size * traits.type_size
src = ctypes.create_string_buffer(x, len(x))
dst = ctypes.create_string_buffer(size)
written = lib.ggml_quantize_chunk(type_id, src, dst, 0, rows, n_per_row, None)
if written != size:
    sys.exit(f'{traits.type_name.decode()}: ggml wrote {written} bytes, expected {size}')
with open(os.path.join(work, 'theirs.bin'), 'wb') as f:
    f.write(dst.raw)
streams = [('theirs', dst.raw)]
if os.path.exists(os.path.join(work, 'ours.bin')):
    with open(os.path.join(work, 'ours.bin'), 'rb') as f:
        ours = f.read()
    if len(ours) != size:
        sys.exit(f'{traits.type_name.decode()}: ours.bin has {len(ours)} bytes, expected {size}')
    streams.append(('ours', ours))
for name, data in streams:
    q = ctypes.create_string_buffer(data, len(data))
    y = ctypes.create_string_buffer(n * 4)
    to_float(q, y, n)
    with open(os.path.join(work, f'{name}.deq.f32'), 'wb') as f:
        f.write(y.raw)
