"""Translation of the validated Istio model into Envoy xDS resources.

Purely computational: no I/O, no clocks, no globals. Same model and proxy identity in,
byte-identical snapshot out.
"""
