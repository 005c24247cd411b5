from libc.stdint cimport uint8_t

cdef bytes frame_bytes(uint8_t opcode, const char* payload, Py_ssize_t n)
