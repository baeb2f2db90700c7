/* config.h -- the emulator's settings: command-line flags (design.md §4), each also readable from the
 * environment as IOTHUB_EMULATOR_<FLAG> (upper case, '-' -> '_'); a flag wins over the environment, and an
 * empty environment variable counts as unset. Pure parsing and validation: no files opened, no sockets.
 * Tests: tests/unit/test_config.c. */
#ifndef IOTHUB_CONFIG_H
#define IOTHUB_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "log.h"

/* config_parse results besides enum err's ERR_OK / ERR_INVALID / ERR_NOMEM. */
#define CONFIG_HELP 100    /* --help or -h was given: print config_usage(stdout), exit 0 */
#define CONFIG_VERSION 101 /* --version was given: print the version, exit 0 */

#define CONFIG_DEFAULT_OWNER_KEY "vNAU4X0yJ+bN45bkZLxelTuiTteDoua0CJj4Heyk7js="
#define CONFIG_DEFAULT_DEVICE1_KEY "Tc/X59hc3Kt9ikEaEGbTRksJ9ytldhgIQObKbDwY4VM="

/* Filled by config_parse; every string is malloc'd and owned by the struct (free with config_cleanup). */
struct config {
    char **hostnames;       /* --hostname, repeatable and comma-separated; unique (case-insensitive) */
    size_t n_hostnames;     /* >= 1; default {"localhost"} */
    char *bind;             /* --bind: "localhost" (127.0.0.1 and ::1; the default) or a numeric address */
    int mqtts_port;         /* --mqtts-port, default 8883; 0 disables */
    int https_port;         /* --https-port, default 443; 0 disables */
    int mqtt_port;          /* --mqtt-port, default 1883; 0 disables */
    int http_port;          /* --http-port, default 8080; 0 disables. Non-zero ports are distinct. */
    int amqps_port;         /* --amqps-port, default 5671; 0 disables */
    int amqp_port;          /* --amqp-port, default 5672; 0 disables */
    char *data_dir;         /* --data-dir, default "./.iothub-emulator" */
    bool in_memory;         /* --in-memory */
    char *cert, *key;       /* --cert, --key: both or neither; NULL means generate (certs.h) */
    char *owner_key;        /* --owner-key: base64 of 16..64 bytes; default CONFIG_DEFAULT_OWNER_KEY */
    bool no_default_device; /* --no-default-device */
    char *device1_key;      /* --default-device-key: base64 of 16..64 bytes; default CONFIG_DEFAULT_DEVICE1_KEY */
    enum log_level log_level;  /* --log-level error|warn|info|debug, default info */
    int max_connections;       /* --max-connections, default 20000 */
    int connect_timeout_s;     /* --connect-timeout: seconds from accept to MQTT CONNECT (or an HTTP request's
                                  line and headers), default 30 */
    int http_idle_timeout_s;   /* --http-idle-timeout: idle HTTP keep-alive connections close, default 240 */
    int token_skew_s;          /* --token-skew: seconds a SAS token is still accepted after its se, default 0 */
    int telemetry_log;         /* --telemetry-log: telemetry messages kept in memory, default 1000 */
    char *hub_name;            /* --hub-name: NULL means derived from --hostname (see --help) */
    int partitions;            /* --partitions: event log partitions, 1 to 32, default 4 */
    char **consumer_groups;    /* --consumer-group, repeatable and comma-separated (validated by main) */
    size_t n_consumer_groups;
    int retention_events;      /* --retention-events, default 100000 */
    int retention_bytes;       /* --retention-bytes, default 64 MiB */
    int retention_hours;       /* --retention-hours, default 24; 0 = no age limit */
    bool no_fault_injection;   /* --no-fault-injection: ignore the SDKs' AzIoTHub_Fault* properties */
    char *throttle;            /* --throttle: "s1", "s2", "s3", "free" or "off"; NULL = off */
    int c2d_ttl_s;             /* --c2d-ttl: seconds a cloud-to-device message lives without its own expiry, 3600 */
};

/* Parses argv[1..argc) over the environment over the defaults. Accepts "--flag value" and "--flag=value";
 * boolean flags take no value ("--in-memory", or "--in-memory=true|false"). Returns ERR_OK, ERR_INVALID (err
 * holds one line naming the flag or variable and why), ERR_NOMEM, CONFIG_HELP or CONFIG_VERSION (checked
 * before anything else, so a bad environment never hides --help). *out is reset on entry and fully valid only
 * on ERR_OK; config_cleanup(out) is safe after any return. */
int config_parse(int argc, char **argv, struct config *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Prints the --help text: every flag with its default and environment variable. */
void config_usage(FILE *f);

/* Frees every string and zeroes the struct. Accepts a zeroed or already cleaned struct. */
void config_cleanup(struct config *c);

#endif
