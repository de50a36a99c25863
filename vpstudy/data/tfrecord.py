"""A minimal TFRecord + ``tf.train.Example`` codec in pure Python/NumPy (no TensorFlow).

TFRecord framing (one record)::

    uint64 length          little-endian
    uint32 masked_crc32c(length bytes)
    bytes  data[length]
    uint32 masked_crc32c(data)

where ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8  (mod 2**32)`` and crc32c is
CRC-32 with the Castagnoli polynomial (reflected 0x82F63B78, init and final xor 0xFFFFFFFF).

``tf.train.Example`` in protobuf wire format (all fields length-delimited unless noted)::

    Example   { 1: Features }
    Features  { 1: repeated MapEntry { 1: string key, 2: Feature value } }
    Feature   { oneof: 1: BytesList, 2: FloatList, 3: Int64List }
    BytesList { 1: repeated bytes }
    FloatList { 1: repeated float  (packed fixed32, or one fixed32 per field) }
    Int64List { 1: repeated int64  (packed varints, or one varint per field) }

Public functions: ``crc32c``, ``masked_crc32c``, ``index_tfrecord`` / ``read_record`` /
``read_tfrecords`` (reading), ``write_tfrecords`` (writing), ``parse_example`` /
``encode_example`` (the Example message). Malformed or corrupt input raises
``vpstudy.data.errors.DataError`` (a ValueError) naming the file.
"""
from __future__ import annotations

import functools
import os
import struct
from typing import BinaryIO, Iterable, Iterator, Sequence, Union

import numpy as np

from vpstudy.data.errors import DataError

PathLike = Union[str, os.PathLike]
FeatureValue = Union[list, np.ndarray]  # list[bytes] | float32 array | int64 array

# ----------------------------------------------------------------------------- CRC-32C

_CRC32C_POLY_REFLECTED = 0x82F63B78
_MASK_DELTA = 0xA282EAD8


def _make_crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY_REFLECTED if crc & 1 else crc >> 1
        table[byte] = crc
    return table


_CRC_TABLE_NP = _make_crc_table()
_CRC_TABLE = _CRC_TABLE_NP.tolist()
_CHUNK = 512            # bytes per chunk in the vectorised path
_VECTORISE_FROM = 4096  # shorter inputs use the plain byte loop


def _crc_register_update(register: int, data) -> int:
    """Feed ``data`` through the raw (reflected, table-driven) CRC register; no init/final xor."""
    table = _CRC_TABLE
    for byte in data:
        register = (register >> 8) ^ table[(register ^ byte) & 0xFF]
    return register


@functools.lru_cache(maxsize=8)
def _zero_bytes_operator(num_zero_bytes: int) -> tuple[list, list, list, list]:
    """Four 256-entry tables that apply "feed ``num_zero_bytes`` zero bytes" to a register.

    With a zero initial register the CRC update is linear over GF(2), so the shift of a
    32-bit register is the XOR of the shifts of its four bytes.
    """
    registers = np.concatenate(
        [np.arange(256, dtype=np.uint32) << np.uint32(8 * k) for k in range(4)])
    for _ in range(num_zero_bytes):
        registers = (registers >> np.uint32(8)) ^ _CRC_TABLE_NP[registers & 0xFF]
    table = registers.reshape(4, 256).tolist()
    return table[0], table[1], table[2], table[3]


def crc32c(data: Union[bytes, bytearray, memoryview]) -> int:
    """CRC-32C (Castagnoli) of ``data`` as an unsigned 32-bit int; crc32c(b"123456789") == 0xE3069283.

    Long inputs are split into ``_CHUNK``-byte rows whose raw CRCs are computed together with
    NumPy (one vector step per byte column) and then combined in order with the
    zero-byte shift operator: ~3 ms for a 370 kB BAIR record instead of ~30 ms
    for the byte loop (2 CPU cores).
    """
    view = memoryview(data).cast("B")
    n = view.nbytes
    if n < _VECTORISE_FROM:
        return _crc_register_update(0xFFFFFFFF, view) ^ 0xFFFFFFFF
    # An initial register of 0xFFFFFFFF equals a zero register with the first 4 message
    # bytes inverted; leading zero bytes leave a zero register unchanged (front padding).
    pad = (-n) % _CHUNK
    padded = np.zeros(pad + n, dtype=np.uint8)
    padded[pad:] = np.frombuffer(view, dtype=np.uint8)
    padded[pad:pad + 4] ^= 0xFF
    columns = padded.reshape(-1, _CHUNK).T.astype(np.uint32)  # (_CHUNK, num_chunks)
    registers = np.zeros(columns.shape[1], dtype=np.uint32)
    eight = np.uint32(8)
    for column in columns:
        registers = (registers >> eight) ^ _CRC_TABLE_NP[(registers ^ column) & 0xFF]
    t0, t1, t2, t3 = _zero_bytes_operator(_CHUNK)
    crc = 0
    for chunk_register in registers.tolist():  # crc(A||B) = shift_|B|(crc(A)) ^ crc(B)
        crc = (t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF]
               ^ t3[crc >> 24] ^ chunk_register)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: Union[bytes, bytearray, memoryview]) -> int:
    """The masked CRC-32C that TFRecord stores after the length and after the data."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- TFRecord framing

def index_tfrecord(path: PathLike) -> list[tuple[int, int]]:
    """Scan a TFRecord file's headers: ``[(data_offset, data_length), ...]`` for each record.

    Reads only the 12-byte headers (seeking over the data) and verifies each length CRC.
    Raises DataError naming the file on a bad length CRC or a truncated file.
    """
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    records = []
    with open(path, "rb") as f:
        position = 0
        while position < file_size:
            header = f.read(12)
            where = f"{path}: record {len(records)} at byte {position}"
            if len(header) < 12:
                raise DataError(f"{where}: truncated TFRecord header "
                                 f"({len(header)} of 12 bytes); the file is incomplete or corrupt")
            length_bytes = header[:8]
            (length,) = struct.unpack("<Q", length_bytes)
            (length_crc,) = struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != length_crc:
                raise DataError(f"{where}: length CRC mismatch (corrupt length field); "
                                 "the file is not a valid TFRecord file")
            end = position + 12 + length + 4
            if end > file_size:
                raise DataError(f"{where}: record of {length} bytes runs past the end of the "
                                 f"file ({file_size} bytes); the file is truncated or corrupt")
            records.append((position + 12, length))
            f.seek(end)
            position = end
    return records


def read_record(f: BinaryIO, offset: int, length: int, verify_crc: bool = True,
                name: str = "<tfrecord>") -> bytes:
    """Read one record's data from an open file at ``offset`` (from ``index_tfrecord``)."""
    f.seek(offset)
    data = f.read(length)
    crc_bytes = f.read(4)
    if len(data) != length or len(crc_bytes) != 4:
        raise DataError(f"{name}: record at byte {offset - 12} is truncated")
    if verify_crc and masked_crc32c(data) != struct.unpack("<I", crc_bytes)[0]:
        raise DataError(f"{name}: record at byte {offset - 12}: data CRC mismatch "
                         "(the record's bytes are corrupt)")
    return data


def read_tfrecords(path: PathLike, verify_crc: bool = True) -> Iterator[bytes]:
    """Yield the data of every record in a TFRecord file, in order."""
    index = index_tfrecord(path)
    with open(path, "rb") as f:
        for offset, length in index:
            yield read_record(f, offset, length, verify_crc, name=os.fspath(path))


def write_tfrecords(path: PathLike, records: Iterable[bytes]) -> None:
    """Write ``records`` to ``path`` with the real TFRecord framing and masked CRC-32Cs."""
    with open(path, "wb") as f:
        for data in records:
            length_bytes = struct.pack("<Q", len(data))
            f.write(length_bytes)
            f.write(struct.pack("<I", masked_crc32c(length_bytes)))
            f.write(data)
            f.write(struct.pack("<I", masked_crc32c(data)))


# ----------------------------------------------------------------------------- protobuf wire format

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise DataError("malformed protobuf: truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise DataError("malformed protobuf: varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Union[int, memoryview]]]:
    """Yield ``(field_number, wire_type, value)``; value is an int (varint) or a memoryview."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field_number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _LENGTH_DELIMITED:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise DataError("malformed protobuf: length-delimited field runs past the end")
            value, pos = buf[pos:pos + size], pos + size
        elif wire_type in (_FIXED32, _FIXED64):
            size = 4 if wire_type == _FIXED32 else 8
            if pos + size > len(buf):
                raise DataError("malformed protobuf: truncated fixed-width field")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise DataError(f"malformed protobuf: unsupported wire type {wire_type}")
        yield field_number, wire_type, value


def _to_int64(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def _parse_feature(buf: memoryview) -> FeatureValue:
    result: FeatureValue = []
    for kind, wire_type, payload in _fields(buf):
        if wire_type != _LENGTH_DELIMITED or kind not in (1, 2, 3):
            continue  # unknown field: skip
        if kind == 1:  # BytesList
            result = [bytes(v) for f, w, v in _fields(payload) if f == 1 and w == _LENGTH_DELIMITED]
        elif kind == 2:  # FloatList
            parts = []
            for f, w, v in _fields(payload):
                if f == 1 and w in (_LENGTH_DELIMITED, _FIXED32):
                    if len(v) % 4:
                        raise DataError("malformed protobuf: packed float list not a multiple of 4")
                    parts.append(np.frombuffer(v, dtype="<f4"))
            result = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        else:  # Int64List
            values = []
            for f, w, v in _fields(payload):
                if f == 1 and w == _VARINT:
                    values.append(_to_int64(v))
                elif f == 1 and w == _LENGTH_DELIMITED:
                    pos = 0
                    while pos < len(v):
                        item, pos = _read_varint(v, pos)
                        values.append(_to_int64(item))
            result = np.array(values, dtype=np.int64)
    return result


def parse_example(data: Union[bytes, memoryview]) -> dict[str, FeatureValue]:
    """Parse a serialized ``tf.train.Example`` into ``{key: value}``.

    Values: ``list[bytes]`` for a BytesList, float32 array for a FloatList, int64 array for
    an Int64List (an empty list for a Feature with no kind set). Unknown fields are skipped.
    """
    features: dict[str, FeatureValue] = {}
    for field, wire_type, features_msg in _fields(memoryview(data)):
        if field != 1 or wire_type != _LENGTH_DELIMITED:
            continue
        for entry_field, entry_wire, entry in _fields(features_msg):
            if entry_field != 1 or entry_wire != _LENGTH_DELIMITED:
                continue
            key, value = "", []
            for f, w, v in _fields(entry):
                if f == 1 and w == _LENGTH_DELIMITED:
                    try:
                        key = bytes(v).decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise DataError("malformed protobuf: feature key is not UTF-8") from e
                elif f == 2 and w == _LENGTH_DELIMITED:
                    value = _parse_feature(v)
            features[key] = value
    return features


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint((field_number << 3) | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _encode_feature(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        value = [value]
    if isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.floating):
            packed = value.astype("<f4").ravel().tobytes()
            return _length_delimited(2, _length_delimited(1, packed))
        if np.issubdtype(value.dtype, np.integer):
            value = [int(v) for v in value.ravel()]
        else:
            raise ValueError(f"unsupported feature array dtype {value.dtype}")
    value = list(value)
    if all(isinstance(v, (bytes, bytearray)) for v in value) and value:
        return _length_delimited(1, b"".join(_length_delimited(1, bytes(v)) for v in value))
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        packed = b"".join(_varint(int(v)) for v in value)
        return _length_delimited(3, _length_delimited(1, packed))
    if all(isinstance(v, (int, float, np.number)) for v in value):
        packed = np.asarray(value, dtype="<f4").tobytes()
        return _length_delimited(2, _length_delimited(1, packed))
    raise ValueError("a feature must be bytes, a list of bytes, a list of ints, "
                     "or a list/array of floats")


def encode_example(features: dict[str, Union[bytes, Sequence, np.ndarray]]) -> bytes:
    """Serialize ``{key: value}`` as a ``tf.train.Example`` (packed float/int64 lists, as TF writes).

    Value types: bytes or list of bytes -> BytesList; list of ints or an integer array ->
    Int64List; list of floats or a float array -> FloatList (stored as float32).
    """
    entries = b"".join(
        _length_delimited(1, _length_delimited(1, key.encode("utf-8"))
                          + _length_delimited(2, _encode_feature(value)))
        for key, value in features.items())
    return _length_delimited(1, entries)
