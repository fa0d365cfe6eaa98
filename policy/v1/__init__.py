"""Generated modules for the native ``policy.v1`` API (proto/policy/v1/policy.proto).

Regenerate with ``make proto``; never edit the ``*_pb2*`` files by hand.
"""
