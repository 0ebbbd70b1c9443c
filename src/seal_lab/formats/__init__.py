"""The formats that cross a service boundary, one owner each: passages, datasets, directives, adapters."""
