"""The reliability suite (`make test-reliability`): fault scenarios under a recorded load.

Every scenario runs on brokers, stores and service processes of its own, on
loopback ports of its own; see docs/reliability.md.
"""
