//! The command-line tool's printers. They are ordinary [`Handler`](crate::Handler)s.
