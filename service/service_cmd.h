/* service_cmd.h -- the iothub-service program's pure parts: command-line parsing, the exit-status policy,
 * and what the commands print (the tutorial's lines, one-line errors, --json objects). No I/O: main.c does
 * the environment, the client calls and the printing. Tests: tests/unit/test_service_cmd.c. */
#ifndef IOTHUB_SERVICE_CMD_H
#define IOTHUB_SERVICE_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "service_client.h"

/* The tutorial's call (CallMethodOnDevice): the defaults of `invoke DEVICE`. */
#define SERVICE_CMD_DEFAULT_METHOD "DeviceMethod"
#define SERVICE_CMD_DEFAULT_PAYLOAD "{\"method_number\":\"42\"}"
#define SERVICE_CMD_DEFAULT_TIMEOUT_S 60
#define SERVICE_CMD_DEFAULT_TTL_S 3600

/* Exit statuses (documented in the usage text). */
enum service_cmd_exit {
    SERVICE_CMD_EXIT_OK = 0,           /* done; for invoke: the device answered, whatever its status */
    SERVICE_CMD_EXIT_INTERNAL = 1,     /* out of memory and the like */
    SERVICE_CMD_EXIT_USAGE = 2,        /* bad arguments or connection string */
    SERVICE_CMD_EXIT_CONNECT = 3,      /* could not reach the hub (refused, DNS, TLS) */
    SERVICE_CMD_EXIT_UNAUTHORIZED = 4, /* HTTP 401: wrong key, policy or expired token */
    SERVICE_CMD_EXIT_NOT_FOUND = 5,    /* HTTP 404 other than 404103: no such device or module */
    SERVICE_CMD_EXIT_NOT_ONLINE = 6,   /* 404103: device not connected or not listening for methods */
    SERVICE_CMD_EXIT_TIMEOUT = 7,      /* 504101 / HTTP 504 / 408, or no answer in time */
    SERVICE_CMD_EXIT_HUB = 8,          /* any other hub error (400 bad timeout, 409 exists, 429, 5xx...) */
};

enum service_cmd_verb {
    SERVICE_CMD_HELP,
    SERVICE_CMD_VERSION,
    SERVICE_CMD_INVOKE,
    SERVICE_CMD_CREATE,
    SERVICE_CMD_GET,
    SERVICE_CMD_LIST,
    SERVICE_CMD_DELETE,
    SERVICE_CMD_CONNECTION_STRING,
    SERVICE_CMD_SAS,
    SERVICE_CMD_TWIN_GET,
    SERVICE_CMD_TWIN_UPDATE,  /* PATCH: merge */
    SERVICE_CMD_TWIN_REPLACE, /* PUT */
    SERVICE_CMD_QUERY,
    SERVICE_CMD_SEND, /* a cloud-to-device message over AMQP */
    SERVICE_CMD_JOB_SCHEDULE_METHOD,
    SERVICE_CMD_JOB_SCHEDULE_TWIN,
    SERVICE_CMD_JOB_GET,
    SERVICE_CMD_JOB_CANCEL,
    SERVICE_CMD_JOB_LIST,
};

/* job get --wait: seconds between polls. */
#define SERVICE_CMD_JOB_POLL_S 1

#define SERVICE_CMD_MAX_PROPS 32
#define SERVICE_CMD_MAX_PROP_KEY 128

/* A parsed command line. Strings point into argv. */
struct service_cmd {
    enum service_cmd_verb verb;
    int is_module;                 /* a `module ...` registry command */
    const char *device_id;
    const char *module_id;         /* module commands, invoke --module, sas --module */
    const char *method;            /* invoke */
    const char *payload;           /* invoke: JSON text */
    int timeout_s;                 /* invoke --timeout */
    int connect_timeout_s;         /* invoke --connect-timeout */
    const char *primary_key;       /* create */
    const char *secondary_key;
    int disabled;                  /* device create --disabled */
    int top;                       /* device list --top, 0 = hub default */
    const char *resource;          /* sas --resource */
    const char *key;               /* sas --key */
    const char *key_name;          /* sas --key-name */
    uint64_t ttl_s;                /* sas --ttl */
    const char *patch;             /* twin update|replace: JSON text */
    const char *etag;              /* twin update|replace --etag (default "*") */
    const char *query;             /* query: the SQL text */
    int page_size;                 /* query --page-size, 0 = the hub's default */
    const char *connection_string; /* --connection-string */
    const char *ca_file;           /* --ca-file */
    const char *url;               /* --url */
    const char *message;           /* send: the body */
    char prop_keys[SERVICE_CMD_MAX_PROPS][SERVICE_CMD_MAX_PROP_KEY]; /* send --property k=v, in order */
    const char *prop_values[SERVICE_CMD_MAX_PROPS];
    size_t n_props;
    const char *ack;               /* send --ack none|positive|negative|full (NULL: not sent) */
    int wait_feedback;             /* send --wait-feedback */
    const char *message_id;        /* send --message-id */
    int expiry_s;                  /* send --expiry (seconds from now) */
    const char *amqp_url;          /* send --amqp-url */
    const char *job_id;            /* job commands */
    const char *start_time;        /* job schedule-* --start (ISO-8601) */
    int max_time_s;                /* job schedule-* --max-time */
    const char *desired;           /* job schedule-twin --desired */
    const char *tags;              /* job schedule-twin --tags */
    const char *job_type;          /* job list --type */
    const char *job_status;        /* job list --status */
    int wait;                      /* job get --wait */
    int json;
    int verbose;
};

/* Parses argv[1..argc). Options may come before or after the positional words; "--opt=value" and
 * "--opt value" both work; "--" ends options. Returns ERR_OK or ERR_INVALID with one line in err. */
int service_cmd_parse(int argc, char **argv, struct service_cmd *out, char *err, size_t errlen);

const char *service_cmd_usage(void);

/* The exit status for an operation that returned rc with result res. */
int service_cmd_exit_status(int rc, const struct service_client_result *res);

/* One line (no newline) describing a failed operation for stderr, e.g.
 * "device not online: The operation failed ... (404103 DeviceNotOnline, HTTP 404)". */
int service_cmd_format_error(int rc, const struct service_client_result *res, struct buf *out);

/* What send prints: the accepted message ("Sent message MID to device D", or {"messageId","deviceId"}), and
 * each feedback record ("Feedback: STATUS for message MID (device D, ENQUEUED)", or the record's JSON). */
int service_cmd_format_sent(const struct service_cmd *cmd, const char *message_id, struct buf *out);
int service_cmd_format_feedback(const struct service_cmd *cmd, const char *record_json, struct buf *out);

/* What invoke prints before the call (nothing with --json), and after it. */
int service_cmd_format_invoke_intro(const struct service_cmd *cmd, struct buf *out);
int service_cmd_format_invoke_result(const struct service_cmd *cmd, int rc, const struct service_client_result *res,
                                     struct buf *out);

/* An identity without its keys: "key: value" lines, or with json its registry object minus
 * authentication.symmetricKey. */
int service_cmd_format_identity(const struct service_client_identity *id, int json, struct buf *out);
/* One line per identity ("id<TAB>status<TAB>connectionState"), or a JSON array of keyless objects. */
int service_cmd_format_list(const struct service_client_identity *ids, size_t n, int json, struct buf *out);

/* The job schedule-* request of a parsed command line. */
void service_cmd_job_spec(const struct service_cmd *cmd, struct service_client_job_spec *out);
/* job get --wait: 1 when the job JSON has a final status (completed, failed, cancelled); the progress line
 * ("job J: running, 1 of 3 devices done (1 succeeded, 0 failed)") into out. ERR_MALFORMED when not a job. */
int service_cmd_job_progress(const char *job_json, int *final, struct buf *out);
/* The exit status of a job that reached a final status: 0 completed, EXIT_HUB failed or cancelled. */
int service_cmd_job_final_status(const char *job_json);

/* JSON text as the twin and query commands print it: indented, or compact with json. ERR_MALFORMED when
 * text is not JSON. */
int service_cmd_format_json(const char *text, int json, struct buf *out);

#endif
