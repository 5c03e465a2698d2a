"""Which partition a command goes to: every command of one ActionItem lands in one partition.

The record key is one per produced record (``<commandId>.<attemptId>``, see
``schemas/record_key.py``), which means the partition cannot come from the key:
it is chosen explicitly from the actionItemId with the same murmur2 hash as
Kafka's Java default partitioner, so the mapping is the one any Kafka client
would compute.
"""

from __future__ import annotations


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    index = length4 * 4
    if extra >= 3:
        h ^= data[index + 2] << 16
    if extra >= 2:
        h ^= data[index + 1] << 8
    if extra >= 1:
        h ^= data[index]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(action_item_id: str, partitions: int) -> int:
    """The partition of an ActionItem's commands (Kafka's toPositive(murmur2(key)) % n)."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (murmur2(action_item_id.encode()) & 0x7FFFFFFF) % partitions
