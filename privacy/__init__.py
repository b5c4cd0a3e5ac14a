"""Keyed pseudonymisation and key management, DP configuration and accounting, audits, DPIA.

A leaf package: it depends on standard and cryptographic libraries only.
"""
