"""Pipeline stage 'encoders': lands with its own issue."""
