// The pipelining client engine: built by the client work.
