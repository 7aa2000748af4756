#include "csentencepiece.h"

#include <sentencepiece_processor.h>

#include <cstring>
#include <string>
#include <vector>

struct blendd_spm {
    sentencepiece::SentencePieceProcessor processor;
};

static void copy_error(const std::string &message, char *error, size_t capacity) {
    if (error == nullptr || capacity == 0) return;
    size_t n = message.size() < capacity - 1 ? message.size() : capacity - 1;
    std::memcpy(error, message.data(), n);
    error[n] = '\0';
}

blendd_spm *blendd_spm_load(const char *path, char *error, size_t error_capacity) {
    auto *model = new blendd_spm();
    auto status = model->processor.Load(path);
    if (!status.ok()) {
        copy_error(status.ToString(), error, error_capacity);
        delete model;
        return nullptr;
    }
    return model;
}

void blendd_spm_free(blendd_spm *model) { delete model; }

int32_t blendd_spm_piece_count(const blendd_spm *model) { return model->processor.GetPieceSize(); }

int32_t blendd_spm_piece_to_id(const blendd_spm *model, const char *piece, size_t length) {
    std::string p(piece, length);
    int id = model->processor.PieceToId(p);
    // PieceToId answers unknown pieces with the unknown id; tell them apart from the real unknown piece.
    if (model->processor.IsUnknown(id) && model->processor.IdToPiece(id) != p) return -1;
    return id;
}

int32_t blendd_spm_id_to_piece(const blendd_spm *model, int32_t id, char *buffer, size_t capacity) {
    if (id < 0 || id >= model->processor.GetPieceSize()) return -1;
    const std::string &piece = model->processor.IdToPiece(id);
    if (piece.size() <= capacity) std::memcpy(buffer, piece.data(), piece.size());
    return static_cast<int32_t>(piece.size());
}

int32_t blendd_spm_is_unknown(const blendd_spm *model, int32_t id) { return model->processor.IsUnknown(id) ? 1 : 0; }

int32_t blendd_spm_is_control(const blendd_spm *model, int32_t id) { return model->processor.IsControl(id) ? 1 : 0; }

int32_t blendd_spm_encode(const blendd_spm *model, const char *text, size_t length, int32_t *ids, size_t capacity,
                          char *error, size_t error_capacity) {
    std::vector<int> out;
    auto status = model->processor.Encode(std::string(text, length), &out);
    if (!status.ok()) {
        copy_error(status.ToString(), error, error_capacity);
        return -1;
    }
    if (out.size() <= capacity) {
        for (size_t i = 0; i < out.size(); i++) ids[i] = out[i];
    }
    return static_cast<int32_t>(out.size());
}
