"""The database: the connection, the models and their migrations."""
