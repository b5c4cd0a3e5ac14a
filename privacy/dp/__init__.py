"""DP configuration and accounting types shared by forces and the national server."""
