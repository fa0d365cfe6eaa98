"""Transports: the grpc.aio servers that translate requests into attribute bags and back."""
