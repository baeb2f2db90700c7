/* frames.h -- the few pieces of AMQP 1.0 framing the emulator handles itself, outside Proton: frame headers,
 * skipping encoded values, reading a performative's fields, the SASL frames (our own SASL layer), and the
 * write-path normaliser that pads Proton 0.37's performatives to full length (iothub-amqp.md §B.3.5).
 * Pure functions over (bytes, length): no I/O, no globals; decoded views point into the caller's bytes.
 * Tests: tests/unit/test_frames.c; fuzz: tests/fuzz/fuzz_amqp.c (through the whole driver path). */
#ifndef IOTHUB_FRAMES_H
#define IOTHUB_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define FRAMES_TYPE_AMQP 0
#define FRAMES_TYPE_SASL 1

/* Performative descriptor codes (AMQP 1.0 §2.7, §5.3.3). */
enum frames_code {
    FRAMES_OPEN = 0x10,
    FRAMES_BEGIN = 0x11,
    FRAMES_ATTACH = 0x12,
    FRAMES_FLOW = 0x13,
    FRAMES_TRANSFER = 0x14,
    FRAMES_DISPOSITION = 0x15,
    FRAMES_DETACH = 0x16,
    FRAMES_END = 0x17,
    FRAMES_CLOSE = 0x18,
    FRAMES_SASL_MECHANISMS = 0x40,
    FRAMES_SASL_INIT = 0x41,
    FRAMES_SASL_CHALLENGE = 0x42,
    FRAMES_SASL_RESPONSE = 0x43,
    FRAMES_SASL_OUTCOME = 0x44,
};

/* The handle-max the normaliser writes into Begin frames that lack one. */
#define FRAMES_HANDLE_MAX 65535u

struct frames_view {
    const uint8_t *p;
    size_t len;
};

struct frames_header {
    uint32_t size; /* the whole frame, header included */
    uint8_t doff;  /* data offset in 4-byte words (>= 2) */
    uint8_t type;
    uint16_t channel;
};

/* Decodes the 8-byte frame header at p[0..len). Returns ERR_OK, ERR_NEED_MORE (fewer than 8 bytes) or
 * ERR_MALFORMED (size < 8, doff < 2, or doff * 4 > size). */
int frames_header_decode(const uint8_t *p, size_t len, struct frames_header *h);

/* The encoded length (constructor included) of the one value at p[0..len). Returns ERR_OK or ERR_MALFORMED
 * (unknown constructor, truncated, or descriptors nested deeper than 4). */
int frames_value_len(const uint8_t *p, size_t len, size_t *vlen);

/* A performative: a described list with a numeric descriptor. */
struct frames_perf {
    uint64_t code;
    uint32_t count;            /* list fields */
    struct frames_view fields; /* the encoded fields, back to back */
    size_t encoded_len;        /* descriptor + list; what follows in the frame body is payload */
};

/* Decodes the performative at the start of a frame body. Returns ERR_OK or ERR_MALFORMED (no descriptor, a
 * descriptor other than a ulong, not a list, or sizes that disagree). */
int frames_perf_decode(const uint8_t *body, size_t len, struct frames_perf *out);
/* The encoded field i of pf. Returns ERR_OK, ERR_NOT_FOUND (past the count, or null) or ERR_MALFORMED. */
int frames_perf_field(const struct frames_perf *pf, uint32_t i, struct frames_view *out);
/* The content of a symbol / binary / string value (constructor checked). Returns ERR_OK, ERR_NOT_FOUND for
 * null, ERR_MALFORMED for any other type. */
int frames_get_symbol(struct frames_view v, struct frames_view *out);
int frames_get_binary(struct frames_view v, struct frames_view *out);
int frames_get_string(struct frames_view v, struct frames_view *out);

/* Incoming frames Proton 0.37 asserts on (aborting the process) instead of refusing them: a transfer with
 * more=true and no delivery-id as the first frame of a delivery (transport.c pn_do_transfer). The guard tracks
 * which (channel, handle) has a multi-frame delivery in progress; a detach forgets the handle, an end its
 * channel. At most FRAMES_GUARD_MAX deliveries in progress at once (more is refused). */
#define FRAMES_GUARD_MAX 64
struct frames_guard {
    uint32_t n;
    struct {
        uint16_t channel;
        uint32_t handle;
    } open[FRAMES_GUARD_MAX];
};
/* Checks one whole incoming frame frame[0..len). Returns ERR_OK, or ERR_MALFORMED with a static reason in
 * *why (the connection must then be closed without handing the frame to Proton). Frames it cannot decode are
 * passed (ERR_OK): Proton refuses those itself. */
int frames_guard_input(struct frames_guard *g, const uint8_t *frame, size_t len, const char **why);

/* The data sections (descriptor 0x75) of an encoded message msg[0..len), each a view of its binary content, in
 * order: at most max into out, their count in *n. A batched message (IoT Hub's message-format 0x80013700, as
 * the C SDK sends telemetry) carries one encoded message per data section; Proton's decoder keeps only the
 * last. Returns ERR_OK, or ERR_MALFORMED (a section that is not a described value, does not decode, or more
 * than max data sections). */
int frames_data_sections(const uint8_t *msg, size_t len, struct frames_view *out, size_t max, size_t *n);

/* Appends a SASL frame: sasl-mechanisms with a symbol array of mechs[0..n), or sasl-outcome with code
 * (0 ok, 1 auth, 2 sys, ...). Returns ERR_OK or an error of buf_append. */
int frames_sasl_mechanisms(struct buf *out, const char *const *mechs, size_t n);
int frames_sasl_outcome(struct buf *out, uint8_t code);

/* Appends the whole frame frame[0..len) to out, padded: an AMQP performative with fewer fields than the
 * spec defines (open 10, begin 8, attach 14, flow 11, transfer 11, disposition 6, detach 3, end 1, close 1)
 * gets null fields appended (Begin a real handle-max, FRAMES_HANDLE_MAX) and the sizes fixed up; the payload
 * of a transfer is kept. Anything else (SASL, heartbeats, full performatives, unknown ones, or a padded frame
 * that would exceed max_frame when max_frame > 0) is copied unchanged. Returns ERR_OK, ERR_MALFORMED (not one
 * whole frame) or an error of buf_append. */
int frames_normalise(const uint8_t *frame, size_t len, uint32_t max_frame, struct buf *out);

#endif
