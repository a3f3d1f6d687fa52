"""The sandbox's MQTT layer: a codec (3.1.1 and 5) and a broker that runs on the caller's loop.

Transport-agnostic: the device gateway owns sockets, TLS and WebSocket framing and
hands each client's byte stream to :meth:`broker.Broker.serve`.
"""
