"""What every service imports: configuration, the service lifecycle, logging, counters,
SQLite opening and the version. Above ``bus``, below ``comms``, the services and ``agent``."""
