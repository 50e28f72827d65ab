"""The index type string, parsed once: FAISS, Milvus and the HTTP schema all call :func:`parse_index_type`.

Accepted spellings (case and spaces ignored): ``Flat`` / ``FLAT`` / ``IDMap,Flat``; ``IVF`` /
``IVF_FLAT`` / ``IVF{nlist}`` / ``IVF{nlist},Flat``; ``HNSW`` / ``HNSW{M}`` / ``HNSW{M},Flat``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from facefeat.errors import InputError

DEFAULT_HNSW_M = 32
#: what a client of the service may ask for (HNSW's M costs ~8*M bytes per face and link level)
MAX_HNSW_M = 64
MAX_IVF_NLIST = 65536


@dataclass(frozen=True)
class IndexType:
    """A parsed index type: ``kind`` is ``"Flat"``, ``"IVF"`` or ``"HNSW"``; ``nlist`` (IVF, None
    for automatic) and ``M`` (HNSW)."""

    kind: str
    nlist: int | None = None
    M: int | None = None

    @property
    def faiss(self) -> str:
        """FAISS's canonical name: ``Flat``, ``IVF`` / ``IVF{n},Flat``, ``HNSW{M}``."""
        if self.kind == "IVF":
            return "IVF" if self.nlist is None else f"IVF{self.nlist},Flat"
        return f"HNSW{self.M}" if self.kind == "HNSW" else "Flat"

    @property
    def milvus(self) -> str:
        """Milvus's index type: ``FLAT``, ``IVF_FLAT``, ``HNSW``."""
        return {"Flat": "FLAT", "IVF": "IVF_FLAT", "HNSW": "HNSW"}[self.kind]

    @property
    def params(self) -> dict:
        return {"nlist": self.nlist} if self.kind == "IVF" else ({"M": self.M} if self.kind == "HNSW" else {})


def parse_index_type(index_type: object, max_m: int | None = None, max_nlist: int | None = None) -> IndexType:
    """Parse an index type string; InputError names the value and the accepted spellings.

    ``max_m`` / ``max_nlist`` bound the numbers (the HTTP service passes its limits)."""
    if not isinstance(index_type, str):
        raise InputError(f"index_type must be a string like 'Flat', 'IVF' or 'HNSW32', got {index_type!r}")
    u = index_type.strip().upper().replace(" ", "")
    out: IndexType | None = None
    if u in ("FLAT", "IDMAP,FLAT", "IDMAP2,FLAT"):
        out = IndexType("Flat")
    elif u in ("IVF", "IVF_FLAT", "IVFFLAT"):
        out = IndexType("IVF")
    elif u == "HNSW":
        out = IndexType("HNSW", M=DEFAULT_HNSW_M)
    else:
        m = re.fullmatch(r"(IVF|HNSW)(\d{1,9})(,FLAT)?", u)
        if m:
            n = int(m.group(2))
            if m.group(1) == "IVF" and n > 0:
                out = IndexType("IVF", nlist=n)
            elif m.group(1) == "HNSW" and n > 1:
                out = IndexType("HNSW", M=n)
    if out is None:
        raise InputError(f"index_type {index_type[:40]!r} is not supported; use Flat, IVF, IVF<nlist>,Flat or "
                         "HNSW<M> (Milvus spellings FLAT, IVF_FLAT, HNSW are accepted too)")
    if max_m is not None and out.M is not None and out.M > max_m:
        raise InputError(f"index_type {index_type!r}: HNSW M = {out.M} is above the limit of {max_m}")
    if max_nlist is not None and out.nlist is not None and out.nlist > max_nlist:
        raise InputError(f"index_type {index_type!r}: nlist = {out.nlist} is above the limit of {max_nlist}")
    return out


__all__ = ["DEFAULT_HNSW_M", "IndexType", "MAX_HNSW_M", "MAX_IVF_NLIST", "parse_index_type"]
