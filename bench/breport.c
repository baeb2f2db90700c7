/* breport.c -- results.json and RESULTS.md from the JSON lines of one run (see breport.h). Reads with
 * jansson; every table cell says emulator, Mosquitto and emulator/Mosquitto. Missing figures print as "-". */
#include "breport.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define BREPORT_LINE_MAX (1024u * 1024u)
#define BREPORT_MAX_VALUES 16

struct breport {
    json_t *all; /* every record, in run order */
    FILE *md;
    const char *mode;
    int missed; /* targets missed */
    int errors; /* records carrying an error */
};

/* ---- input ---- */

static json_t *read_jsonl(const char *path)
{
    FILE *f = fopen(path, "r");
    json_t *all = json_array();
    char *line = malloc(BREPORT_LINE_MAX);
    if (!f || !all || !line) {
        if (f)
            fclose(f);
        free(line);
        json_decref(all);
        return NULL;
    }
    while (fgets(line, BREPORT_LINE_MAX, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (json_is_object(j))
            json_array_append(all, j);
        json_decref(j);
    }
    fclose(f);
    free(line);
    return all;
}

static char *read_text(const char *path)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return NULL;
    char *text = calloc(1, BREPORT_LINE_MAX);
    size_t n = text ? fread(text, 1, BREPORT_LINE_MAX - 1, f) : 0;
    if (text)
        text[n] = '\0';
    fclose(f);
    return text;
}

/* ---- lookups ---- */

static const char *str_of(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

static double num_of(const json_t *j, const char *key)
{
    return json_number_value(json_object_get(j, key));
}

static json_t *find_method(const struct breport *r, const char *target, const char *transport, long dev, long inflight,
                           long payload)
{
    size_t i;
    json_t *j;
    json_array_foreach(r->all, i, j)
    {
        if (strcmp(str_of(j, "kind"), "method") == 0 && strcmp(str_of(j, "target"), target) == 0 &&
            strcmp(str_of(j, "transport"), transport) == 0 && num_of(j, "devices") == dev &&
            num_of(j, "inflight") == inflight && num_of(j, "payload_bytes") == payload)
            return j;
    }
    return NULL;
}

static json_t *find_kind(const struct breport *r, const char *kind, const char *target, const char *key,
                         const char *value)
{
    size_t i;
    json_t *j;
    json_array_foreach(r->all, i, j)
    {
        if (strcmp(str_of(j, "kind"), kind) == 0 && strcmp(str_of(j, "target"), target) == 0 &&
            strcmp(str_of(j, key), value) == 0)
            return j;
    }
    return NULL;
}

/* The distinct values of key among the emulator's method records of a transport, ascending. */
static size_t distinct(const struct breport *r, const char *transport, const char *key, long *out)
{
    size_t n = 0, i;
    json_t *j;
    json_array_foreach(r->all, i, j)
    {
        if (strcmp(str_of(j, "kind"), "method") || strcmp(str_of(j, "transport"), transport))
            continue;
        long v = (long)num_of(j, key);
        size_t k = 0;
        while (k < n && out[k] < v)
            k++;
        if ((k < n && out[k] == v) || n == BREPORT_MAX_VALUES)
            continue;
        memmove(out + k + 1, out + k, (n - k) * sizeof *out);
        out[k] = v;
        n++;
    }
    return n;
}

/* ---- formatting ---- */

static const char *fmt_num(char *b, size_t n, double v, const char *unit)
{
    if (v >= 100)
        snprintf(b, n, "%.0f%s", v, unit);
    else if (v >= 10)
        snprintf(b, n, "%.1f%s", v, unit);
    else
        snprintf(b, n, "%.3g%s", v, unit);
    return b;
}

static const char *fmt_payload(char *b, size_t n, long bytes)
{
    if (bytes >= 1024 && bytes % 1024 == 0)
        snprintf(b, n, "%ld KiB", bytes / 1024);
    else
        snprintf(b, n, "%ld B", bytes);
    return b;
}

static const char *fmt_ratio(char *b, size_t n, double emu, double mosq)
{
    if (mosq > 0 && emu >= 0)
        snprintf(b, n, "%.2f×", emu / mosq);
    else
        snprintf(b, n, "-");
    return b;
}

/* "emu / mosq (ratio)" for one numeric field of two records. */
static void cell(FILE *f, const json_t *e, const json_t *m, const char *key, const char *unit)
{
    char a[32], b[32], c[32];
    if (!e || !m) {
        fputs(" - |", f);
        return;
    }
    double x = num_of(e, key), y = num_of(m, key);
    fprintf(f, " %s / %s (%s) |", fmt_num(a, sizeof a, x, unit), fmt_num(b, sizeof b, y, unit),
            fmt_ratio(c, sizeof c, x, y));
}

/* ---- sections ---- */

static void headline_row(struct breport *r, const char *figure, double emu, double mosq, const char *unit,
                         bool lower_is_better)
{
    char a[32], b[32], c[32];
    bool known = emu >= 0 && mosq > 0;
    bool met = known && (lower_is_better ? emu <= mosq : emu >= mosq);
    if (known && !met)
        r->missed++;
    fprintf(r->md, "| %s | %s | %s | %s | %s | %s |\n", figure, emu >= 0 ? fmt_num(a, sizeof a, emu, unit) : "-",
            mosq >= 0 ? fmt_num(b, sizeof b, mosq, unit) : "-", fmt_ratio(c, sizeof c, emu, mosq),
            lower_is_better ? "≤ 1.0×" : "≥ 1.0×", known ? (met ? "met" : "**missed**") : "-");
}

static void headline_methods(struct breport *r, const char *transport)
{
    long dev[BREPORT_MAX_VALUES], inf[BREPORT_MAX_VALUES], pay[BREPORT_MAX_VALUES];
    size_t nd = distinct(r, transport, "devices", dev), ni = distinct(r, transport, "inflight", inf),
           np = distinct(r, transport, "payload_bytes", pay);
    if (!nd || !ni)
        return;
    for (size_t p = 0; p < np; p++) {
        json_t *e = find_method(r, "emulator", transport, dev[nd - 1], inf[ni - 1], pay[p]);
        json_t *m = find_method(r, "mosquitto", transport, dev[nd - 1], inf[ni - 1], pay[p]);
        char fig[160], pb[32];
        snprintf(fig, sizeof fig, "method-call p50, %s, %ld devices, %ld in flight, %s", transport, dev[nd - 1],
                 inf[ni - 1], fmt_payload(pb, sizeof pb, pay[p]));
        headline_row(r, fig, e ? num_of(e, "p50_ms") : -1, m ? num_of(m, "p50_ms") : -1, " ms", true);
        snprintf(fig, sizeof fig, "method calls/s, %s, %ld devices, %ld in flight, %s", transport, dev[nd - 1],
                 inf[ni - 1], pb);
        headline_row(r, fig, e ? num_of(e, "calls_per_s") : -1, m ? num_of(m, "calls_per_s") : -1, "", false);
    }
}

/* Over every phase at the highest concurrency: how many meet each method-call target. */
static void headline_counts(struct breport *r)
{
    int total = 0, p50_ok = 0, tput_ok = 0;
    long top = 0;
    size_t i;
    json_t *j;
    json_array_foreach(r->all, i, j)
    {
        if (strcmp(str_of(j, "kind"), "method") == 0 && num_of(j, "inflight") > top)
            top = (long)num_of(j, "inflight");
    }
    json_array_foreach(r->all, i, j)
    {
        if (strcmp(str_of(j, "kind"), "method") || strcmp(str_of(j, "target"), "emulator") ||
            num_of(j, "inflight") != top)
            continue;
        json_t *m = find_method(r, "mosquitto", str_of(j, "transport"), (long)num_of(j, "devices"), top,
                                (long)num_of(j, "payload_bytes"));
        if (!m)
            continue;
        total++;
        p50_ok += num_of(j, "p50_ms") <= num_of(m, "p50_ms");
        tput_ok += num_of(j, "calls_per_s") >= num_of(m, "calls_per_s");
    }
    fprintf(r->md,
            "\nOver all %d phases at %ld calls in flight (both transports, every device count and payload): "
            "p50 ≤ Mosquitto's in %d, calls/s ≥ Mosquitto's in %d.\n",
            total, top, p50_ok, tput_ok);
}

static void headline_scale_startup(struct breport *r)
{
    json_t *e = find_kind(r, "scale", "emulator", "transport", "tls");
    json_t *m = find_kind(r, "scale", "mosquitto", "transport", "tls");
    char fig[160];
    snprintf(fig, sizeof fig, "RSS per idle TLS device (%.0f devices)", e ? num_of(e, "devices") : 0.0);
    headline_row(r, fig, e ? num_of(e, "rss_per_device_kib") : -1, m ? num_of(m, "rss_per_device_kib") : -1, " KiB",
                 true);
    json_t *s = find_kind(r, "startup", "emulator", "label", "registry");
    char a[32];
    double ms = s ? num_of(s, "median_ms") : -1;
    bool met = s && ms < 100;
    if (s && !met)
        r->missed++;
    fprintf(r->md, "| start-up, exec to /health 200, %s (median) | %s | - | - | < 100 ms | %s |\n",
            s ? str_of(s, "registry_desc") : "registry", s ? fmt_num(a, sizeof a, ms, " ms") : "-",
            s ? (met ? "met" : "**missed**") : "-");
}

static void section_headline(struct breport *r)
{
    fputs("\n## Headline: the targets of issue 8\n\n"
          "| figure | emulator | Mosquitto | ratio | target | result |\n|---|---:|---:|---:|---|---|\n",
          r->md);
    headline_methods(r, "tls");
    headline_methods(r, "plain");
    headline_scale_startup(r);
    headline_counts(r);
}

static void method_row(struct breport *r, const char *transport, long dev, long inf, long pay)
{
    json_t *e = find_method(r, "emulator", transport, dev, inf, pay);
    json_t *m = find_method(r, "mosquitto", transport, dev, inf, pay);
    char pb[32];
    fprintf(r->md, "| %ld | %ld | %s |", dev, inf, fmt_payload(pb, sizeof pb, pay));
    cell(r->md, e, m, "p50_ms", "");
    cell(r->md, e, m, "p90_ms", "");
    cell(r->md, e, m, "p99_ms", "");
    cell(r->md, e, m, "max_ms", "");
    cell(r->md, e, m, "calls_per_s", "");
    cell(r->md, e, m, "server_cpu_s_per_10k", " s");
    if (e && m)
        fprintf(r->md, " %.2f / %.2f | %.2f / %.2f |", num_of(e, "server_cpu"), num_of(m, "server_cpu"),
                num_of(e, "bench_cpu"), num_of(m, "bench_cpu"));
    else
        fputs(" - | - |", r->md);
    bool err = (e && num_of(e, "errors") > 0) || (m && num_of(m, "errors") > 0);
    r->errors += err;
    fprintf(r->md, "%s\n", err ? " errors" : "");
}

static void section_methods(struct breport *r, const char *transport, const char *title)
{
    long dev[BREPORT_MAX_VALUES], inf[BREPORT_MAX_VALUES], pay[BREPORT_MAX_VALUES];
    size_t nd = distinct(r, transport, "devices", dev), ni = distinct(r, transport, "inflight", inf),
           np = distinct(r, transport, "payload_bytes", pay);
    if (!nd)
        return;
    fprintf(r->md,
            "\n## Method calls, %s\n\nEach cell: emulator / Mosquitto (ratio). Latency in ms. CPU is cores "
            "used (1.00 = one core) by the server and by this load generator during the phase; server CPU / 10k is "
            "the server's utime+stime (/proc/<pid>/stat) per 10,000 calls.\n\n"
            "| devices | in flight | payload | p50 | p90 | p99 | max | calls/s | server CPU / 10k calls | server CPU "
            "| bench CPU |\n|---:|---:|---:|---|---|---|---|---|---|---|---|\n",
            title);
    for (size_t d = 0; d < nd; d++)
        for (size_t i = 0; i < ni; i++)
            for (size_t p = 0; p < np; p++)
                method_row(r, transport, dev[d], inf[i], pay[p]);
}

static void scale_row(struct breport *r, const char *figure, const json_t *e, const json_t *m, const char *key,
                      const char *unit)
{
    char a[32], b[32], c[32];
    double x = e ? num_of(e, key) : -1, y = m ? num_of(m, key) : -1;
    fprintf(r->md, "| %s | %s | %s | %s |\n", figure, x >= 0 ? fmt_num(a, sizeof a, x, unit) : "-",
            y >= 0 ? fmt_num(b, sizeof b, y, unit) : "-", fmt_ratio(c, sizeof c, x, y));
}

static void section_scale(struct breport *r)
{
    fputs("\n## Connection scale\n\nDevices connect (TCP, TLS, MQTT CONNECT, SUBSCRIBE) with at most 64 in "
          "progress; RSS is the server's VmRSS before and after (1 s settle), idle CPU is utime+stime over the idle "
          "window. Each row pair ran against freshly started servers.\n\n"
          "| figure | emulator | Mosquitto | ratio |\n|---|---:|---:|---:|\n",
          r->md);
    static const char *const transports[] = {"tls", "plain"};
    for (size_t t = 0; t < 2; t++) {
        json_t *e = find_kind(r, "scale", "emulator", "transport", transports[t]);
        json_t *m = find_kind(r, "scale", "mosquitto", "transport", transports[t]);
        if (!e && !m)
            continue;
        char fig[160];
        const char *tn = transports[t];
        snprintf(fig, sizeof fig, "%s: devices connected (asked for %.0f)", tn, num_of(e ? e : m, "devices"));
        scale_row(r, fig, e, m, "connected", "");
        snprintf(fig, sizeof fig, "%s: time to connect all", tn);
        scale_row(r, fig, e, m, "connect_s", " s");
        snprintf(fig, sizeof fig, "%s: RSS per connected device", tn);
        scale_row(r, fig, e, m, "rss_per_device_kib", " KiB");
        snprintf(fig, sizeof fig, "%s: RSS with all connected", tn);
        scale_row(r, fig, e, m, "rss_after_kib", " KiB");
        snprintf(fig, sizeof fig, "%s: idle CPU over %.0f s", tn, num_of(e ? e : m, "idle_s"));
        scale_row(r, fig, e, m, "idle_cpu_pct", " %");
        r->errors += (e && *str_of(e, "error")) || (m && *str_of(m, "error"));
    }
}

static void section_startup(struct breport *r)
{
    fputs("\n## Start-up\n\nFrom fork+exec to the first good answer, probed every millisecond: the emulator's "
          "`GET /health` 200, Mosquitto's CONNACK (it has no registry, so its figure is the same baseline for both "
          "rows). Median of the runs; certificates already generated (one unmeasured warm-up start).\n\n"
          "| figure | emulator | Mosquitto | ratio |\n|---|---:|---:|---:|\n",
          r->md);
    json_t *m = find_kind(r, "startup", "mosquitto", "label", "baseline");
    static const char *const labels[] = {"empty", "registry"};
    for (size_t i = 0; i < 2; i++) {
        json_t *e = find_kind(r, "startup", "emulator", "label", labels[i]);
        if (!e)
            continue;
        char fig[160];
        snprintf(fig, sizeof fig, "exec to ready, %s (median of %.0f; min %.1f, max %.1f ms)",
                 str_of(e, "registry_desc"), num_of(e, "runs"), num_of(e, "min_ms"), num_of(e, "max_ms"));
        scale_row(r, fig, e, m, "median_ms", " ms");
    }
}

static void section_intro(struct breport *r, const char *machine, const char *notes)
{
    fprintf(r->md,
            "# Benchmark results\n\nWritten by `bench/run.sh%s` (see bench/README.md). The machine is shared and "
            "noisy: compare the ratios, not the absolute times. Ratio = emulator / Mosquitto.\n\n"
            "**The baseline is a broker relay, not HTTP.** For the emulator a caller posts "
            "`/twins/{id}/methods` over HTTP/1.1 keep-alive (one connection per call in flight), the emulator "
            "delivers the call to the device over MQTT and returns the answer in the HTTP response. For Mosquitto "
            "an MQTT requester publishes to the device's request topic, the device (subscribed) publishes the "
            "answer to the requester's reply topic. Both make the same hops (caller -> server -> device -> "
            "server -> caller) with the same payloads, concurrency and device counts; QoS 0 both ways, as IoT "
            "Hub method requests and SDK answers are. The ratio shows what HTTP + auth + routing cost against a "
            "general broker. Where the emulator's time and memory go, and what to change: bench/README.md, "
            "section Findings.\n",
            strcmp(r->mode, "quick") == 0 ? " --quick" : "");
    fprintf(r->md, "\n## Machine and run\n\n```text\n%s%s```\n", machine ? machine : "(not recorded)\n",
            notes ? notes : "");
}

static int write_md(struct breport *r, const char *path, const char *machine, const char *notes)
{
    r->md = fopen(path, "w");
    if (!r->md)
        return ERR_IO;
    section_intro(r, machine, notes);
    section_headline(r);
    section_methods(r, "tls", "TLS (HTTPS caller, MQTT over TLS devices; Mosquitto TLS listener)");
    section_methods(r, "plain", "plain TCP (HTTP caller, MQTT devices; Mosquitto plain listener)");
    section_scale(r);
    section_startup(r);
    fprintf(r->md, "\n%d target(s) missed; %d figure(s) with errors.\n", r->missed, r->errors);
    return fclose(r->md) ? ERR_IO : ERR_OK;
}

static int write_json(const struct breport *r, const char *path, const char *machine, const char *notes)
{
    json_t *root = json_pack("{s:s, s:s, s:s, s:O}", "mode", r->mode, "machine", machine ? machine : "", "notes",
                             notes ? notes : "", "results", r->all);
    int rc = root && json_dump_file(root, path, JSON_INDENT(1)) == 0 ? ERR_OK : ERR_IO;
    json_decref(root);
    return rc;
}

int breport_main(struct bopt *o)
{
    const char *jsonl = bopt_str(o, "jsonl", NULL), *md = bopt_str(o, "md-out", NULL),
               *js = bopt_str(o, "json-out", NULL);
    if (!jsonl || !md || !js) {
        fprintf(stderr, "iothub_bench report: need --jsonl, --md-out and --json-out\n");
        return ERR_INVALID;
    }
    struct breport r = {.mode = bopt_str(o, "mode", "full")};
    r.all = read_jsonl(jsonl);
    char *machine = read_text(bopt_str(o, "machine", NULL)), *notes = read_text(bopt_str(o, "notes", NULL));
    int rc = r.all ? write_md(&r, md, machine, notes) : ERR_IO;
    if (!rc)
        rc = write_json(&r, js, machine, notes);
    if (rc)
        fprintf(stderr, "iothub_bench report: cannot read %s or write %s / %s\n", jsonl, md, js);
    json_decref(r.all);
    free(machine);
    free(notes);
    return rc;
}
