"""The shared core of image similarity search: settings, Elasticsearch client, decode, features."""
