#ifndef CCOMPRESSION_H
#define CCOMPRESSION_H

// zlib and liblzma for the Images module. Only what Swift cannot call
// directly lives here: zlib's init functions are macros.
#include <zlib.h>
#include <lzma.h>

/// inflateInit2 for a gzip stream (window 15, gzip wrapper only).
int ccompression_inflate_init_gzip(z_stream *stream);

/// LZMA_CONCATENATED is defined with UINT32_C(), which Swift does not import.
static const uint32_t CCOMPRESSION_LZMA_CONCATENATED = LZMA_CONCATENATED;

#endif
