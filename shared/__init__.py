"""The project's shared package: settings, messages, topology, broker, store, logging."""
