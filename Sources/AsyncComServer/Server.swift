// The reactor server: built by the server work.
