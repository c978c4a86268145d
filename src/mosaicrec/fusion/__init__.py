"""Pipeline stage 'fusion': lands with its own issue."""
