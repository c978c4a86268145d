"""The API's routes, one module per resource; each declares the key kind it needs and its typed response."""
