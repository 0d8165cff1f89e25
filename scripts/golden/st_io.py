"""Hand-written safetensors writer and reader (torch + numpy + stdlib only).

File layout (https://github.com/huggingface/safetensors):
  * 8 bytes: little-endian u64 N, the length of the JSON header;
  * N bytes: UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]},
    "__metadata__": {str: str}}, padded with spaces so that 8 + N is a multiple of 8;
  * the data: every tensor's raw little-endian bytes, contiguous, in header order,
    offsets relative to the start of the data section.
"""

import json
import struct

import numpy as np
import torch

# safetensors dtype -> (torch dtype, numpy dtype used to (de)serialise the raw bytes)
_DTYPES = {
    "F64": (torch.float64, np.dtype("<f8")),
    "F32": (torch.float32, np.dtype("<f4")),
    "F16": (torch.float16, np.dtype("<f2")),
    "BF16": (torch.bfloat16, np.dtype("<u2")),  # raw bit pattern
    "I64": (torch.int64, np.dtype("<i8")),
    "I32": (torch.int32, np.dtype("<i4")),
    "U8": (torch.uint8, np.dtype("u1")),
}
_FROM_TORCH = {tdt: name for name, (tdt, _) in _DTYPES.items()}

MAX_HEADER = 100 * 1024 * 1024


def _raw_bytes(t):
    """Little-endian bytes of a CPU tensor, in C order."""
    t = t.detach().cpu().contiguous()
    name = _FROM_TORCH[t.dtype]
    npdt = _DTYPES[name][1]
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy().view(np.uint16)
    else:
        arr = t.numpy()
    return name, np.ascontiguousarray(arr.astype(npdt, copy=False)).tobytes()


def dumps(tensors, metadata=None):
    """Serialise an ordered mapping name -> tensor to safetensors bytes.

    Tensors are written in the mapping's order; the header lists "__metadata__" first.
    """
    header = {}
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("reserved tensor name")
        dtype, raw = _raw_bytes(t)
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    pad = (-(8 + len(hjson))) % 8
    hjson += b" " * pad
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks)


def write(path, tensors, metadata=None):
    data = dumps(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def loads(data):
    """Parse safetensors bytes; returns (dict name -> tensor in header order, metadata)."""
    if len(data) < 8:
        raise ValueError("file too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise ValueError("bad header length %d" % n)
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    body = data[8 + n :]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    expect = 0
    out = {}
    for name, info in entries:
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise ValueError("unsupported dtype %s for %s" % (dtype, name))
        tdt, npdt = _DTYPES[dtype]
        shape = [int(s) for s in info["shape"]]
        begin, end = info["data_offsets"]
        if begin != expect or end < begin or end > len(body):
            raise ValueError("offsets of %s are not contiguous / in range" % name)
        numel = 1
        for s in shape:
            if s < 0:
                raise ValueError("negative dimension in %s" % name)
            numel *= s
        if end - begin != numel * npdt.itemsize:
            raise ValueError("byte count of %s does not match its shape" % name)
        arr = np.frombuffer(body[begin:end], dtype=npdt).reshape(shape).copy()
        if tdt == torch.bfloat16:
            t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(arr.astype(npdt.newbyteorder("="), copy=False))
        out[name] = t
        expect = end
    if expect != len(body):
        raise ValueError("trailing bytes after the last tensor")
    # keep header order for the caller
    ordered = {k: out[k] for k in header.keys()}
    return ordered, metadata


def read(path):
    with open(path, "rb") as f:
        return loads(f.read())
