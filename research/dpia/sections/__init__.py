"""The seven DPIA sections, one module per group of ICO steps."""
