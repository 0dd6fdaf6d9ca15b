#include "CCompression.h"

int ccompression_inflate_init_gzip(z_stream *stream) {
    // 16 + 15: expect a gzip header and trailer, maximum window.
    return inflateInit2(stream, 16 + 15);
}
