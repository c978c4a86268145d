"""Pipeline stage 'serving': lands with its own issue."""
