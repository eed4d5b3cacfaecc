#!/usr/bin/env python3
"""Makes undefined dynamic symbols of an ELF64 shared library weak, in place.

    scripts/weaken-symbols.py LIBRARY SYMBOL...

scripts/install-torchvision.sh needs it: torchvision's operator library
(the wheel's _C.so) holds CUDA kernels that call one function of
libtorch_cuda.so (at::cuda::getCurrentDeviceProperties). A CPU-only
libtorch has no libtorch_cuda.so, so dlopen(RTLD_NOW) refuses the library
for that one unresolved symbol, although without libtorch_cuda no CUDA
tensor can exist and those kernels can never run. A weak undefined symbol
binds to the real function where libtorch_cuda is loaded (the worker loads
it first on a GPU machine) and to nothing otherwise, so the same file loads
with RTLD_NOW beside either libtorch.

Only the symbol's binding (the high nibble of st_info in .dynsym) changes;
every symbol named must be an undefined one, else nothing is written.
"""
import struct
import sys

SHT_DYNSYM = 11
STB_WEAK = 2


def weaken(path, names):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"{path}: not a little-endian ELF64 file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    dynsym = next((s for s in sections if s[1] == SHT_DYNSYM), None)
    if dynsym is None:
        sys.exit(f"{path}: no .dynsym section")
    _, _, _, _, sym_off, sym_size, link, _, _, entsize = dynsym
    str_off = sections[link][4]
    wanted = set(names)
    found = {}
    for i in range(sym_size // entsize):
        at = sym_off + i * entsize
        st_name, st_info, _, st_shndx = struct.unpack_from("<IBBH", data, at)
        end = data.index(b"\0", str_off + st_name)
        name = data[str_off + st_name : end].decode()
        if name in wanted:
            if st_shndx != 0:
                sys.exit(f"{path}: {name} is defined in the library, not undefined")
            found[name] = (at, st_info)
    missing = wanted - found.keys()
    if missing:
        sys.exit(f"{path}: no undefined symbol {', '.join(sorted(missing))}")
    for at, st_info in found.values():
        data[at + 4] = (STB_WEAK << 4) | (st_info & 0xF)
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: scripts/weaken-symbols.py LIBRARY SYMBOL...")
    weaken(sys.argv[1], sys.argv[2:])
