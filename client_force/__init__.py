"""One force's node: ingest, its encrypted store, local DP training and its Flower ClientApp.

Everything in here runs inside a force. Raw VRMs, camera ids and camera coordinates exist
only in this package's inputs and never leave it.
"""
