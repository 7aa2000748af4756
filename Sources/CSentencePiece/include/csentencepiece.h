// A C interface to Debian's libsentencepiece, so Swift can call it without C++ interop.
#ifndef BLENDD_CSENTENCEPIECE_H
#define BLENDD_CSENTENCEPIECE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct blendd_spm blendd_spm;

/// Loads a model file. On failure returns NULL and writes a message into `error` (NUL-terminated, truncated).
blendd_spm *blendd_spm_load(const char *path, char *error, size_t error_capacity);
void blendd_spm_free(blendd_spm *model);

int32_t blendd_spm_piece_count(const blendd_spm *model);
/// -1 when the piece is not in the vocabulary (SentencePiece itself answers with the unknown id).
int32_t blendd_spm_piece_to_id(const blendd_spm *model, const char *piece, size_t length);
/// Copies the piece's UTF-8 bytes (not NUL-terminated) and returns their length, or -1 for a bad id.
/// When the buffer is too small, returns the length needed and copies nothing.
int32_t blendd_spm_id_to_piece(const blendd_spm *model, int32_t id, char *buffer, size_t capacity);
int32_t blendd_spm_is_unknown(const blendd_spm *model, int32_t id);
int32_t blendd_spm_is_control(const blendd_spm *model, int32_t id);

/// Encodes UTF-8 text into ids. Returns the number of ids (which may exceed `capacity`: call again with a larger
/// buffer), or -1 on failure with a message in `error`.
int32_t blendd_spm_encode(const blendd_spm *model, const char *text, size_t length, int32_t *ids, size_t capacity,
                          char *error, size_t error_capacity);

#ifdef __cplusplus
}
#endif

#endif
