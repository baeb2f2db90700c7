/* service_cmd.c -- iothub-service's command line, exit statuses and output text (see service_cmd.h).
 * Pure: builds text into buffers; main.c prints it. Never formats a key or a token except for the
 * commands whose purpose that is (connection-string, sas: printed by main.c). */
#include "service_cmd.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* ---- options ---- */

enum opt_id {
    OPT_CONNECTION_STRING,
    OPT_CA_FILE,
    OPT_URL,
    OPT_JSON,
    OPT_VERBOSE,
    OPT_HELP,
    OPT_VERSION,
    OPT_PAYLOAD,
    OPT_TIMEOUT,
    OPT_CONNECT_TIMEOUT,
    OPT_MODULE,
    OPT_PRIMARY_KEY,
    OPT_SECONDARY_KEY,
    OPT_DISABLED,
    OPT_TOP,
    OPT_RESOURCE,
    OPT_KEY,
    OPT_KEY_NAME,
    OPT_TTL,
    OPT_DEVICE,
    OPT_ETAG,
    OPT_PAGE_SIZE,
    OPT_PROPERTY,
    OPT_ACK,
    OPT_WAIT_FEEDBACK,
    OPT_MESSAGE_ID,
    OPT_EXPIRY,
    OPT_AMQP_URL,
    OPT_QUERY,
    OPT_METHOD,
    OPT_START,
    OPT_MAX_TIME,
    OPT_DESIRED,
    OPT_TAGS,
    OPT_TYPE,
    OPT_STATUS,
    OPT_WAIT,
};

/* Which commands accept an option. */
#define FOR_ALL 0x01u
#define FOR_INVOKE 0x02u
#define FOR_CREATE 0x04u
#define FOR_LIST 0x08u
#define FOR_SAS 0x10u
#define FOR_TWIN 0x20u
#define FOR_TWIN_WRITE 0x40u
#define FOR_QUERY 0x80u
#define FOR_SEND 0x100u
#define FOR_JOB 0x200u        /* job schedule-method and schedule-twin */
#define FOR_JOB_METHOD 0x400u /* job schedule-method */
#define FOR_JOB_TWIN 0x800u   /* job schedule-twin */
#define FOR_JOB_LIST 0x1000u
#define FOR_JOB_GET 0x2000u

static const struct {
    const char *name;
    enum opt_id id;
    int has_arg;
    unsigned for_cmds;
} options[] = {
    {"connection-string", OPT_CONNECTION_STRING, 1, FOR_ALL},
    {"ca-file", OPT_CA_FILE, 1, FOR_ALL},
    {"url", OPT_URL, 1, FOR_ALL},
    {"json", OPT_JSON, 0, FOR_ALL},
    {"verbose", OPT_VERBOSE, 0, FOR_ALL},
    {"help", OPT_HELP, 0, FOR_ALL},
    {"version", OPT_VERSION, 0, FOR_ALL},
    {"payload", OPT_PAYLOAD, 1, FOR_INVOKE | FOR_JOB_METHOD},
    {"timeout", OPT_TIMEOUT, 1, FOR_INVOKE | FOR_SEND | FOR_JOB_METHOD},
    {"response-timeout", OPT_TIMEOUT, 1, FOR_JOB_METHOD}, /* the SDKs' name for a job's --timeout */
    {"query", OPT_QUERY, 1, FOR_JOB},
    {"method", OPT_METHOD, 1, FOR_JOB_METHOD},
    {"start", OPT_START, 1, FOR_JOB},
    {"max-time", OPT_MAX_TIME, 1, FOR_JOB},
    {"desired", OPT_DESIRED, 1, FOR_JOB_TWIN},
    {"tags", OPT_TAGS, 1, FOR_JOB_TWIN},
    {"type", OPT_TYPE, 1, FOR_JOB_LIST},
    {"status", OPT_STATUS, 1, FOR_JOB_LIST},
    {"wait", OPT_WAIT, 0, FOR_JOB_GET},
    {"property", OPT_PROPERTY, 1, FOR_SEND},
    {"ack", OPT_ACK, 1, FOR_SEND},
    {"wait-feedback", OPT_WAIT_FEEDBACK, 0, FOR_SEND},
    {"message-id", OPT_MESSAGE_ID, 1, FOR_SEND},
    {"expiry", OPT_EXPIRY, 1, FOR_SEND},
    {"amqp-url", OPT_AMQP_URL, 1, FOR_SEND},
    {"connect-timeout", OPT_CONNECT_TIMEOUT, 1, FOR_INVOKE | FOR_JOB_METHOD},
    {"module", OPT_MODULE, 1, FOR_INVOKE | FOR_SAS | FOR_TWIN},
    {"etag", OPT_ETAG, 1, FOR_TWIN_WRITE},
    {"page-size", OPT_PAGE_SIZE, 1, FOR_QUERY | FOR_JOB_LIST},
    {"primary-key", OPT_PRIMARY_KEY, 1, FOR_CREATE},
    {"secondary-key", OPT_SECONDARY_KEY, 1, FOR_CREATE},
    {"disabled", OPT_DISABLED, 0, FOR_CREATE},
    {"top", OPT_TOP, 1, FOR_LIST},
    {"resource", OPT_RESOURCE, 1, FOR_SAS},
    {"key", OPT_KEY, 1, FOR_SAS},
    {"key-name", OPT_KEY_NAME, 1, FOR_SAS},
    {"ttl", OPT_TTL, 1, FOR_SAS},
    {"device", OPT_DEVICE, 1, FOR_SAS},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

#define MAX_POSITIONAL 4

struct parse_state {
    const char *pos[MAX_POSITIONAL];
    size_t n_pos;
    unsigned char seen[N_OPTIONS]; /* options given, by index in options[] */
};

static int parse_int(const char *text, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < min || v > max)
        return ERR_INVALID;
    *out = v;
    return ERR_OK;
}

static int set_number(enum opt_id id, const char *name, const char *value, struct service_cmd *cmd, char *err,
                      size_t errlen)
{
    long v = 0;
    long max = id == OPT_TOP || id == OPT_PAGE_SIZE ? 1000
               : id == OPT_TTL                       ? 10L * 365 * 24 * 3600
               : id == OPT_EXPIRY                    ? 2L * 24 * 3600 /* the hub's longest C2D TTL */
               : id == OPT_MAX_TIME                  ? 7L * 24 * 3600
                                                     : 3600;
    long min = id == OPT_CONNECT_TIMEOUT ? 0 : 1;
    if (parse_int(value, min, max, &v)) {
        snprintf(err, errlen, "--%s needs a whole number from %ld to %ld, not \"%s\"", name, min, max, value);
        return ERR_INVALID;
    }
    if (id == OPT_TIMEOUT)
        cmd->timeout_s = (int)v;
    else if (id == OPT_CONNECT_TIMEOUT)
        cmd->connect_timeout_s = (int)v;
    else if (id == OPT_TOP)
        cmd->top = (int)v;
    else if (id == OPT_PAGE_SIZE)
        cmd->page_size = (int)v;
    else if (id == OPT_EXPIRY)
        cmd->expiry_s = (int)v;
    else if (id == OPT_MAX_TIME)
        cmd->max_time_s = (int)v;
    else
        cmd->ttl_s = (uint64_t)v;
    return ERR_OK;
}

/* --property k=v: the key up to the first '=' (not empty), the value after it (may be empty). */
static int add_property(const char *kv, struct service_cmd *cmd, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        snprintf(err, errlen, "--property needs KEY=VALUE, not \"%s\"", kv);
        return ERR_INVALID;
    }
    if ((size_t)(eq - kv) >= SERVICE_CMD_MAX_PROP_KEY || strlen(eq + 1) > 512) {
        snprintf(err, errlen, "--property: the key is at most %d characters, the value 512",
                 SERVICE_CMD_MAX_PROP_KEY - 1);
        return ERR_INVALID;
    }
    if (cmd->n_props >= SERVICE_CMD_MAX_PROPS) {
        snprintf(err, errlen, "at most %d --property options", SERVICE_CMD_MAX_PROPS);
        return ERR_INVALID;
    }
    memcpy(cmd->prop_keys[cmd->n_props], kv, (size_t)(eq - kv));
    cmd->prop_keys[cmd->n_props][eq - kv] = 0;
    cmd->prop_values[cmd->n_props++] = eq + 1;
    return ERR_OK;
}

static int apply_option(enum opt_id id, const char *name, const char *value, struct service_cmd *cmd, char *err,
                        size_t errlen)
{
    switch (id) {
    case OPT_CONNECTION_STRING: cmd->connection_string = value; break;
    case OPT_CA_FILE: cmd->ca_file = value; break;
    case OPT_URL: cmd->url = value; break;
    case OPT_JSON: cmd->json = 1; break;
    case OPT_VERBOSE: cmd->verbose = 1; break;
    case OPT_HELP: cmd->verb = SERVICE_CMD_HELP; break;
    case OPT_VERSION: cmd->verb = SERVICE_CMD_VERSION; break;
    case OPT_PAYLOAD: cmd->payload = value; break;
    case OPT_MODULE: cmd->module_id = value; break;
    case OPT_PRIMARY_KEY: cmd->primary_key = value; break;
    case OPT_SECONDARY_KEY: cmd->secondary_key = value; break;
    case OPT_DISABLED: cmd->disabled = 1; break;
    case OPT_RESOURCE: cmd->resource = value; break;
    case OPT_KEY: cmd->key = value; break;
    case OPT_KEY_NAME: cmd->key_name = value; break;
    case OPT_DEVICE: cmd->device_id = value; break;
    case OPT_ETAG: cmd->etag = value; break;
    case OPT_PROPERTY: return add_property(value, cmd, err, errlen);
    case OPT_ACK:
        if (strcmp(value, "none") && strcmp(value, "positive") && strcmp(value, "negative") && strcmp(value, "full")) {
            snprintf(err, errlen, "--ack is none, positive, negative or full, not \"%s\"", value);
            return ERR_INVALID;
        }
        cmd->ack = value;
        break;
    case OPT_WAIT_FEEDBACK: cmd->wait_feedback = 1; break;
    case OPT_MESSAGE_ID: cmd->message_id = value; break;
    case OPT_AMQP_URL: cmd->amqp_url = value; break;
    case OPT_QUERY: cmd->query = value; break;
    case OPT_METHOD: cmd->method = value; break;
    case OPT_START: cmd->start_time = value; break;
    case OPT_DESIRED: cmd->desired = value; break;
    case OPT_TAGS: cmd->tags = value; break;
    case OPT_TYPE: cmd->job_type = value; break;
    case OPT_STATUS: cmd->job_status = value; break;
    case OPT_WAIT: cmd->wait = 1; break;
    case OPT_MAX_TIME:
    case OPT_EXPIRY:
    case OPT_PAGE_SIZE:
    case OPT_TIMEOUT:
    case OPT_CONNECT_TIMEOUT:
    case OPT_TOP:
    case OPT_TTL: return set_number(id, name, value, cmd, err, errlen);
    }
    return ERR_OK;
}

/* Handles argv[*i], an option; may consume argv[*i + 1] as its value. */
static int parse_option(int argc, char **argv, int *i, struct service_cmd *cmd, struct parse_state *st, char *err,
                        size_t errlen)
{
    const char *arg = argv[*i] + 2, *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    for (size_t k = 0; k < N_OPTIONS; k++) {
        if (strlen(options[k].name) != name_len || memcmp(options[k].name, arg, name_len) != 0)
            continue;
        const char *value = NULL;
        if (options[k].has_arg && eq) {
            value = eq + 1;
        } else if (options[k].has_arg) {
            if (*i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", options[k].name);
                return ERR_INVALID;
            }
            value = argv[++*i];
        } else if (eq) {
            snprintf(err, errlen, "--%s takes no value", options[k].name);
            return ERR_INVALID;
        }
        st->seen[k] = 1;
        return apply_option(options[k].id, options[k].name, value, cmd, err, errlen);
    }
    snprintf(err, errlen, "unknown option --%.*s", (int)name_len, arg);
    return ERR_INVALID;
}

/* ---- commands ---- */

static const struct {
    const char *name;
    enum service_cmd_verb verb;
} registry_verbs[] = {
    {"create", SERVICE_CMD_CREATE},
    {"get", SERVICE_CMD_GET},
    {"list", SERVICE_CMD_LIST},
    {"delete", SERVICE_CMD_DELETE},
    {"connection-string", SERVICE_CMD_CONNECTION_STRING},
};

static int wrong_count(const char *usage, char *err, size_t errlen)
{
    snprintf(err, errlen, "usage: iothub-service %s", usage);
    return ERR_INVALID;
}

static int interpret_invoke(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    if (st->n_pos < 2 || st->n_pos > 3)
        return wrong_count("invoke DEVICE [METHOD] [--payload JSON] [--timeout S] [--connect-timeout S] "
                           "[--module M] [--json]",
                           err, errlen);
    cmd->verb = SERVICE_CMD_INVOKE;
    cmd->device_id = st->pos[1];
    cmd->method = st->n_pos == 3 ? st->pos[2] : SERVICE_CMD_DEFAULT_METHOD;
    if (!cmd->payload)
        cmd->payload = SERVICE_CMD_DEFAULT_PAYLOAD;
    if (!cmd->timeout_s)
        cmd->timeout_s = SERVICE_CMD_DEFAULT_TIMEOUT_S;
    return ERR_OK;
}

static int interpret_registry(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    int module = strcmp(st->pos[0], "module") == 0;
    const char *what = module ? "module create|get|list|delete|connection-string DEVICE MODULE (list: DEVICE)"
                              : "device create|get|list|delete|connection-string ID (list: no ID)";
    size_t k = 0, n = sizeof registry_verbs / sizeof registry_verbs[0];
    while (st->n_pos >= 2 && k < n && strcmp(registry_verbs[k].name, st->pos[1]) != 0)
        k++;
    if (st->n_pos < 2 || k == n)
        return wrong_count(what, err, errlen);
    cmd->verb = registry_verbs[k].verb;
    cmd->is_module = module;
    size_t want = (size_t)(cmd->verb == SERVICE_CMD_LIST ? 2 : 3) + (size_t)module;
    if (st->n_pos != want)
        return wrong_count(what, err, errlen);
    if (module && cmd->disabled) {
        snprintf(err, errlen, "a module has no status: --disabled applies to devices only");
        return ERR_INVALID;
    }
    if (module && cmd->module_id) {
        snprintf(err, errlen, "module commands take the module id as a word, not --module");
        return ERR_INVALID;
    }
    cmd->device_id = want > 2 ? st->pos[2] : NULL;
    cmd->module_id = module && want > 3 ? st->pos[3] : NULL;
    return ERR_OK;
}

static int interpret_twin(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    const char *usage = "twin get DEVICE [--module M] | twin update|replace DEVICE JSON [--module M] [--etag E]";
    if (st->n_pos < 3)
        return wrong_count(usage, err, errlen);
    const char *verb = st->pos[1];
    if (strcmp(verb, "get") == 0 && st->n_pos == 3)
        cmd->verb = SERVICE_CMD_TWIN_GET;
    else if (strcmp(verb, "update") == 0 && st->n_pos == 4)
        cmd->verb = SERVICE_CMD_TWIN_UPDATE;
    else if (strcmp(verb, "replace") == 0 && st->n_pos == 4)
        cmd->verb = SERVICE_CMD_TWIN_REPLACE;
    else
        return wrong_count(usage, err, errlen);
    cmd->device_id = st->pos[2];
    cmd->patch = st->n_pos == 4 ? st->pos[3] : NULL;
    if (cmd->patch) {
        json_t *j = json_loads(cmd->patch, 0, NULL);
        int ok = json_is_object(j);
        json_decref(j);
        if (!ok) {
            snprintf(err, errlen, "the twin patch must be a JSON object, e.g. '{\"properties\":{\"desired\":{\"k\":1}}}'");
            return ERR_INVALID;
        }
    }
    return ERR_OK;
}

static int interpret_query(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    if (st->n_pos != 2 || !*st->pos[1])
        return wrong_count("query \"SELECT * FROM devices WHERE ...\" [--page-size N]", err, errlen);
    cmd->verb = SERVICE_CMD_QUERY;
    cmd->query = st->pos[1];
    return ERR_OK;
}

static int interpret_send(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    if (st->n_pos != 3 || !*st->pos[1])
        return wrong_count("send DEVICE MESSAGE [--property K=V]... [--ack none|positive|negative|full] "
                           "[--wait-feedback] [--message-id ID] [--expiry S] [--timeout S]",
                           err, errlen);
    cmd->verb = SERVICE_CMD_SEND;
    cmd->device_id = st->pos[1];
    cmd->message = st->pos[2];
    if (cmd->wait_feedback && !cmd->ack)
        cmd->ack = "full"; /* waiting for feedback that was not asked for would never end */
    if (cmd->wait_feedback && strcmp(cmd->ack, "none") == 0) {
        snprintf(err, errlen, "--wait-feedback needs feedback: --ack positive, negative or full");
        return ERR_INVALID;
    }
    return ERR_OK;
}

static int interpret_sas(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    const char *usage = "sas --resource URI --key KEY [--key-name NAME] [--ttl S] | sas --device ID "
                        "[--module M] [--ttl S]";
    if (st->n_pos != 1)
        return wrong_count(usage, err, errlen);
    cmd->verb = SERVICE_CMD_SAS;
    if (!cmd->ttl_s)
        cmd->ttl_s = SERVICE_CMD_DEFAULT_TTL_S;
    int by_device = cmd->device_id != NULL;
    int by_key = cmd->resource || cmd->key || cmd->key_name;
    if (by_device == by_key || (by_key && (!cmd->resource || !cmd->key)) || (cmd->module_id && !by_device))
        return wrong_count(usage, err, errlen);
    return ERR_OK;
}

#define JOB_USAGE                                                                                              \
    "job schedule-method JOB --query WHERE --method NAME [--payload JSON] [--start ISO] [--max-time S] "        \
    "[--timeout S] [--connect-timeout S] | job schedule-twin JOB --query WHERE --desired JSON [--tags JSON] "   \
    "[--start ISO] [--max-time S] | job get JOB [--wait] | job cancel JOB | job list [--type T] [--status S] "  \
    "[--page-size N]"

static const char *const job_types[] = {"scheduleDeviceMethod", "scheduleUpdateTwin", NULL};
/* The hub's job statuses (swagger JobResponse.status). */
static const char *const job_statuses[] = {"queued", "scheduled", "running", "completed", "failed",
                                           "cancelled", "enqueued", "unknown", NULL};

static int one_of(const char *v, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strcmp(v, set[i]) == 0)
            return 1;
    return 0;
}

/* "a JSON object" check of a job option's text. */
static int json_object_text(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    int ok = json_is_object(j);
    json_decref(j);
    return ok;
}

static int interpret_job_schedule(struct service_cmd *cmd, char *err, size_t errlen)
{
    if (!cmd->query || !*cmd->query) {
        snprintf(err, errlen, "a job needs --query WHERE-CLAUSE (e.g. --query \"tags.building = '43'\")");
        return ERR_INVALID;
    }
    if (cmd->verb == SERVICE_CMD_JOB_SCHEDULE_METHOD) {
        if (!cmd->method || !*cmd->method) {
            snprintf(err, errlen, "job schedule-method needs --method NAME");
            return ERR_INVALID;
        }
        json_t *j = cmd->payload ? json_loads(cmd->payload, JSON_DECODE_ANY, NULL) : NULL;
        int bad = cmd->payload && !j;
        json_decref(j);
        if (bad) {
            snprintf(err, errlen, "--payload must be JSON (quote a string: '\"text\"')");
            return ERR_INVALID;
        }
        return ERR_OK;
    }
    if (!cmd->desired && !cmd->tags) {
        snprintf(err, errlen, "job schedule-twin needs --desired JSON and/or --tags JSON");
        return ERR_INVALID;
    }
    if ((cmd->desired && !json_object_text(cmd->desired)) || (cmd->tags && !json_object_text(cmd->tags))) {
        snprintf(err, errlen, "--%s must be a JSON object, e.g. '{\"interval\":30}'",
                 cmd->desired && !json_object_text(cmd->desired) ? "desired" : "tags");
        return ERR_INVALID;
    }
    return ERR_OK;
}

static int interpret_job(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        enum service_cmd_verb verb;
    } verbs[] = {{"schedule-method", SERVICE_CMD_JOB_SCHEDULE_METHOD},
                 {"schedule-twin", SERVICE_CMD_JOB_SCHEDULE_TWIN},
                 {"get", SERVICE_CMD_JOB_GET},
                 {"cancel", SERVICE_CMD_JOB_CANCEL},
                 {"list", SERVICE_CMD_JOB_LIST}};
    size_t k = 0, n = sizeof verbs / sizeof verbs[0];
    while (st->n_pos >= 2 && k < n && strcmp(verbs[k].name, st->pos[1]) != 0)
        k++;
    if (st->n_pos < 2 || k == n)
        return wrong_count(JOB_USAGE, err, errlen);
    cmd->verb = verbs[k].verb;
    size_t want = cmd->verb == SERVICE_CMD_JOB_LIST ? 2 : 3;
    if (st->n_pos != want || (want == 3 && !*st->pos[2]))
        return wrong_count(JOB_USAGE, err, errlen);
    cmd->job_id = want == 3 ? st->pos[2] : NULL;
    if (cmd->job_type && !one_of(cmd->job_type, job_types)) {
        snprintf(err, errlen, "--type is scheduleDeviceMethod or scheduleUpdateTwin, not \"%s\"", cmd->job_type);
        return ERR_INVALID;
    }
    if (cmd->job_status && !one_of(cmd->job_status, job_statuses)) {
        snprintf(err, errlen, "--status is queued, scheduled, running, completed, failed or cancelled, not \"%s\"",
                 cmd->job_status);
        return ERR_INVALID;
    }
    if (cmd->verb == SERVICE_CMD_JOB_SCHEDULE_METHOD || cmd->verb == SERVICE_CMD_JOB_SCHEDULE_TWIN)
        return interpret_job_schedule(cmd, err, errlen);
    return ERR_OK;
}

/* Rejects options given to a command that does not take them. */
static int check_options_fit(const struct parse_state *st, const struct service_cmd *cmd, char *err,
                             size_t errlen)
{
    unsigned allowed = FOR_ALL;
    if (cmd->verb == SERVICE_CMD_INVOKE)
        allowed |= FOR_INVOKE;
    else if (cmd->verb == SERVICE_CMD_CREATE)
        allowed |= FOR_CREATE;
    else if (cmd->verb == SERVICE_CMD_LIST && !cmd->is_module)
        allowed |= FOR_LIST;
    else if (cmd->verb == SERVICE_CMD_SAS)
        allowed |= FOR_SAS;
    else if (cmd->verb == SERVICE_CMD_TWIN_GET)
        allowed |= FOR_TWIN;
    else if (cmd->verb == SERVICE_CMD_TWIN_UPDATE || cmd->verb == SERVICE_CMD_TWIN_REPLACE)
        allowed |= FOR_TWIN | FOR_TWIN_WRITE;
    else if (cmd->verb == SERVICE_CMD_QUERY)
        allowed |= FOR_QUERY;
    else if (cmd->verb == SERVICE_CMD_SEND)
        allowed |= FOR_SEND;
    else if (cmd->verb == SERVICE_CMD_JOB_SCHEDULE_METHOD)
        allowed |= FOR_JOB | FOR_JOB_METHOD;
    else if (cmd->verb == SERVICE_CMD_JOB_SCHEDULE_TWIN)
        allowed |= FOR_JOB | FOR_JOB_TWIN;
    else if (cmd->verb == SERVICE_CMD_JOB_LIST)
        allowed |= FOR_JOB_LIST;
    else if (cmd->verb == SERVICE_CMD_JOB_GET)
        allowed |= FOR_JOB_GET;
    for (size_t k = 0; k < N_OPTIONS; k++) {
        if (st->seen[k] && !(options[k].for_cmds & allowed)) {
            snprintf(err, errlen, "--%s does not apply to this command", options[k].name);
            return ERR_INVALID;
        }
    }
    return ERR_OK;
}

static int interpret(const struct parse_state *st, struct service_cmd *cmd, char *err, size_t errlen)
{
    if (cmd->verb == SERVICE_CMD_HELP || cmd->verb == SERVICE_CMD_VERSION)
        return ERR_OK;
    if (st->n_pos == 0) {
        snprintf(err, errlen, "no command given");
        return ERR_INVALID;
    }
    int rc;
    const char *word = st->pos[0];
    if (strcmp(word, "help") == 0) {
        cmd->verb = SERVICE_CMD_HELP;
        return ERR_OK;
    } else if (strcmp(word, "invoke") == 0) {
        rc = interpret_invoke(st, cmd, err, errlen);
    } else if (strcmp(word, "device") == 0 || strcmp(word, "module") == 0) {
        rc = interpret_registry(st, cmd, err, errlen);
    } else if (strcmp(word, "sas") == 0) {
        rc = interpret_sas(st, cmd, err, errlen);
    } else if (strcmp(word, "twin") == 0) {
        rc = interpret_twin(st, cmd, err, errlen);
    } else if (strcmp(word, "query") == 0) {
        rc = interpret_query(st, cmd, err, errlen);
    } else if (strcmp(word, "send") == 0) {
        rc = interpret_send(st, cmd, err, errlen);
    } else if (strcmp(word, "job") == 0) {
        rc = interpret_job(st, cmd, err, errlen);
    } else {
        snprintf(err, errlen, "unknown command \"%s\"", word);
        return ERR_INVALID;
    }
    return rc ? rc : check_options_fit(st, cmd, err, errlen);
}

int service_cmd_parse(int argc, char **argv, struct service_cmd *out, char *err, size_t errlen)
{
    struct parse_state st;
    memset(&st, 0, sizeof st);
    memset(out, 0, sizeof *out);
    out->verb = SERVICE_CMD_INVOKE; /* provisional; interpret() decides */
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (!options_done && (strcmp(a, "-h") == 0)) {
            out->verb = SERVICE_CMD_HELP;
        } else if (!options_done && a[0] == '-' && a[1] == '-') {
            if (parse_option(argc, argv, &i, out, &st, err, errlen))
                return ERR_INVALID;
        } else if (st.n_pos < MAX_POSITIONAL) {
            st.pos[st.n_pos++] = a;
        } else {
            snprintf(err, errlen, "too many arguments (\"%s\")", a);
            return ERR_INVALID;
        }
    }
    return interpret(&st, out, err, errlen);
}

int service_cmd_format_json(const char *text, int json, struct buf *out)
{
    json_t *j = json_loads(text ? text : "", JSON_DECODE_ANY, NULL);
    if (!j)
        return ERR_MALFORMED;
    char *dumped = json_dumps(j, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | (json ? JSON_COMPACT : JSON_INDENT(2)));
    json_decref(j);
    if (!dumped)
        return ERR_NOMEM;
    int rc = buf_append_str(out, dumped);
    if (!rc)
        rc = buf_append_byte(out, '\n');
    free(dumped);
    return rc;
}

const char *service_cmd_usage(void)
{
    return "usage: iothub-service COMMAND [options]\n"
           "\n"
           "Commands:\n"
           "  invoke DEVICE [METHOD] [--payload JSON] [--timeout S] [--connect-timeout S] [--module M] [--json]\n"
           "      Invoke a direct method. Defaults are the tutorial's call: METHOD " SERVICE_CMD_DEFAULT_METHOD
           ", payload\n"
           "      " SERVICE_CMD_DEFAULT_PAYLOAD ", --timeout 60 (response timeout; the hub allows 5..300),\n"
           "      --connect-timeout 0 (how long the hub waits for the device to connect). --payload null sends none.\n"
           "  device create ID [--primary-key K] [--secondary-key K] [--disabled]   (keys are generated if omitted)\n"
           "  device get ID | device list [--top N] | device delete ID\n"
           "  device connection-string ID          print the device's connection string (with its key)\n"
           "  module create DEVICE MODULE [--primary-key K] [--secondary-key K]\n"
           "  module get DEVICE MODULE | module list DEVICE | module delete DEVICE MODULE\n"
           "  module connection-string DEVICE MODULE\n"
           "  sas --resource URI --key KEY [--key-name NAME] [--ttl S]\n"
           "      print a SAS token for URI (e.g. myhub.azure-devices.net/devices/dev1), like\n"
           "      `az iot hub generate-sas-token`; --ttl defaults to 3600 seconds\n"
           "  sas --device ID [--module M] [--ttl S]  print a device (module) token, fetching its key from the registry\n"
           "  twin get DEVICE [--module M]         print the device's (module's) twin\n"
           "  twin update DEVICE JSON [--module M] [--etag E]\n"
           "      merge JSON into the twin (PATCH: tags and properties.desired; null deletes), e.g.\n"
           "      '{\"properties\":{\"desired\":{\"interval\":30}}}'; --etag refuses a stale twin (default \"*\")\n"
           "  twin replace DEVICE JSON [--module M] [--etag E]   replace tags and desired properties (PUT)\n"
           "  query SQL [--page-size N]            run a query (\"SELECT * FROM devices WHERE tags.x = 'y'\"), all\n"
           "      pages, and print the rows as one JSON array\n"
           "  send DEVICE MESSAGE [--property K=V]... [--ack none|positive|negative|full] [--wait-feedback]\n"
           "       [--message-id ID] [--expiry S] [--timeout S] [--amqp-url URL]\n"
           "      send a cloud-to-device message over AMQP (amqps://HostName:5671, SASL PLAIN with a SAS token);\n"
           "      --wait-feedback waits (--timeout, default 60 s) for its feedback record and prints the records\n"
           "      received (implies --ack full unless --ack says otherwise); --expiry: seconds it may wait for the\n"
           "      device (default: the hub's TTL); --message-id defaults to a random UUID; --amqp-url (default\n"
           "      $IOTHUB_SERVICE_AMQP_URL) e.g. amqps://localhost:5671, or amqp://127.0.0.1:5672 (emulator dev port)\n"
           "  job schedule-method JOB --query WHERE --method NAME [--payload JSON] [--start ISO] [--max-time S]\n"
           "       [--timeout S] [--connect-timeout S]\n"
           "      schedule a job calling METHOD on every device matching WHERE (a twin query condition such as\n"
           "      \"tags.building = '43'\"); --payload defaults to null, --timeout (alias --response-timeout) to 30,\n"
           "      --start (e.g. 2026-12-01T15:00:00Z) to now, --max-time to 3600 seconds; prints the job\n"
           "  job schedule-twin JOB --query WHERE --desired JSON [--tags JSON] [--start ISO] [--max-time S]\n"
           "      schedule a twin update (desired properties and/or tags) of every matching device\n"
           "  job get JOB [--wait]                 print the job; --wait polls until it is completed, failed or\n"
           "      cancelled, with a progress line on stderr per change (exit 8 when it failed or was cancelled)\n"
           "  job cancel JOB                       cancel a scheduled or running job and print it\n"
           "  job list [--type scheduleDeviceMethod|scheduleUpdateTwin] [--status S] [--page-size N]\n"
           "      list the jobs (GET /jobs/v2/query), all pages, as one JSON array\n"
           "\n"
           "Options for every command:\n"
           "  --connection-string CS  service connection string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)\n"
           "                          default: $IOTHUB_CONNECTION_STRING\n"
           "  --ca-file FILE          trust this CA (the emulator's ca.pem); default: $IOTHUB_CA_FILE, else the system store\n"
           "                          ('' for the system store even when IOTHUB_CA_FILE is set)\n"
           "  --url BASE              send requests to BASE instead of https://HostName, e.g. the emulator's dev ports\n"
           "                          https://localhost:8443 or http://127.0.0.1:8080; default: $IOTHUB_SERVICE_URL\n"
           "  --json                  print one JSON object (keys are never included except by connection-string, sas)\n"
           "  --verbose               log retries to stderr\n"
           "  -h, --help, --version\n"
           "\n"
           "Exit status:\n"
           "  0 done (invoke: the device answered, whatever status it returned)\n"
           "  1 internal error            2 bad arguments or connection string\n"
           "  3 cannot reach the hub (connection refused, DNS, TLS verification)\n"
           "  4 unauthorized (HTTP 401)   5 device or module not found (HTTP 404, amqp:not-found)\n"
           "  6 device not online (404103)  7 timeout (504101, or no answer in time)\n"
           "  8 any other hub error (bad timeout value, already exists, throttled, server error...)\n"
           "\n"
           "From nothing to a call against the emulator (a real hub: its connection string, and no CA file):\n"
           "  export IOTHUB_CONNECTION_STRING='HostName=127.0.0.1;SharedAccessKeyName=iothubowner;SharedAccessKey=...'\n"
           "  export IOTHUB_CA_FILE=.iothub-emulator/ca.pem     # in the emulator's --data-dir\n"
           "  iothub-service device create mydevice\n"
           "  iothub-service device connection-string mydevice  # start the device with it, then:\n"
           "  iothub-service invoke mydevice --connect-timeout 10\n";
}

/* ---- exit statuses and error lines ---- */

int service_cmd_exit_status(int rc, const struct service_client_result *res)
{
    if (rc == ERR_INVALID)
        return SERVICE_CMD_EXIT_USAGE;
    if (rc == ERR_MALFORMED)
        return SERVICE_CMD_EXIT_HUB;
    if (rc)
        return SERVICE_CMD_EXIT_INTERNAL;
    if (res->kind == SERVICE_CLIENT_ANSWERED)
        return SERVICE_CMD_EXIT_OK;
    if (res->kind == SERVICE_CLIENT_TRANSPORT_ERROR)
        return res->net == SERVICE_CLIENT_NET_TIMEOUT ? SERVICE_CMD_EXIT_TIMEOUT : SERVICE_CMD_EXIT_CONNECT;
    if (res->error_name && strncmp(res->error_name, "amqp:", 5) == 0 && !res->http_status) /* send */
        return strcmp(res->error_name, "amqp:not-found") == 0                ? SERVICE_CMD_EXIT_NOT_FOUND
               : strcmp(res->error_name, "amqp:unauthorized-access") == 0 ? SERVICE_CMD_EXIT_UNAUTHORIZED
                                                                          : SERVICE_CMD_EXIT_HUB;
    if (res->error_code == 404103)
        return SERVICE_CMD_EXIT_NOT_ONLINE;
    if (res->http_status == 401)
        return SERVICE_CMD_EXIT_UNAUTHORIZED;
    if (res->error_code == 504101 || res->http_status == 504 || res->http_status == 408)
        return SERVICE_CMD_EXIT_TIMEOUT;
    if (res->http_status == 404)
        return SERVICE_CMD_EXIT_NOT_FOUND;
    return SERVICE_CMD_EXIT_HUB;
}

static const char *transport_what(enum service_client_net net)
{
    switch (net) {
    case SERVICE_CLIENT_NET_CONNECT: return "cannot connect to the hub";
    case SERVICE_CLIENT_NET_TLS: return "TLS with the hub failed";
    case SERVICE_CLIENT_NET_TIMEOUT: return "timeout: no answer from the hub";
    case SERVICE_CLIENT_NET_RESET: return "the connection to the hub broke";
    default: return "transport error";
    }
}

static const char *hub_what(int status)
{
    switch (status) {
    case SERVICE_CMD_EXIT_NOT_ONLINE: return "device not online";
    case SERVICE_CMD_EXIT_UNAUTHORIZED: return "unauthorized";
    case SERVICE_CMD_EXIT_TIMEOUT: return "timeout";
    case SERVICE_CMD_EXIT_NOT_FOUND: return "not found";
    default: return "hub error";
    }
}

int service_cmd_format_error(int rc, const struct service_client_result *res, struct buf *out)
{
    const char *msg = res->message && *res->message ? res->message : err_str(rc);
    if (rc == ERR_MALFORMED)
        return buf_printf(out, "unexpected answer from the hub: %s", msg);
    if (rc)
        return buf_printf(out, "%s", msg);
    if (res->kind == SERVICE_CLIENT_TRANSPORT_ERROR) {
        const char *hint = res->net == SERVICE_CLIENT_NET_TLS ? " (to trust the emulator's CA, use --ca-file or "
                                                                "IOTHUB_CA_FILE)"
                                                              : "";
        return buf_printf(out, "%s: %s%s", transport_what(res->net), msg, hint);
    }
    if (!res->http_status && res->error_name) /* an AMQP condition */
        return buf_printf(out, "%s: %s (%s)", hub_what(service_cmd_exit_status(rc, res)), msg, res->error_name);
    int rc2 = buf_printf(out, "%s: %s (", hub_what(service_cmd_exit_status(rc, res)), msg);
    if (!rc2 && res->error_code)
        rc2 = buf_printf(out, "%ld ", res->error_code);
    if (!rc2 && res->error_name)
        rc2 = buf_printf(out, "%s, ", res->error_name);
    return rc2 ? rc2 : buf_printf(out, "HTTP %ld)", res->http_status);
}

/* ---- invoke output ---- */

/* Appends s as a JSON string, or null. */
static int append_json_str(struct buf *b, const char *s)
{
    if (!s)
        return buf_append_str(b, "null");
    json_t *j = json_string(s);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    int rc = text ? buf_append_str(b, text) : buf_append_str(b, "\"\"");
    free(text);
    return rc;
}

int service_cmd_format_invoke_intro(const struct service_cmd *cmd, struct buf *out)
{
    if (cmd->json)
        return ERR_OK;
    int rc = buf_printf(out, "Invoking direct method for device: %s", cmd->device_id);
    if (!rc && cmd->module_id)
        rc = buf_printf(out, ", module: %s", cmd->module_id);
    if (!rc)
        rc = buf_printf(out, "\nMethod name: %s\nMethod payload: %s\n", cmd->method,
                        cmd->payload ? cmd->payload : "null");
    return rc;
}

static int format_invoke_json(const struct service_cmd *cmd, int rc, const struct service_client_result *res,
                              struct buf *out)
{
    int e = buf_append_str(out, "{\"deviceId\":");
    e = e ? e : append_json_str(out, cmd->device_id);
    e = e ? e : buf_append_str(out, ",\"moduleId\":");
    e = e ? e : append_json_str(out, cmd->module_id);
    e = e ? e : buf_append_str(out, ",\"methodName\":");
    e = e ? e : append_json_str(out, cmd->method);
    if (!rc && res->kind == SERVICE_CLIENT_ANSWERED) {
        e = e ? e : buf_printf(out, ",\"status\":%d,\"payload\":%s}\n", res->status, res->payload);
        return e;
    }
    e = e ? e : buf_printf(out, ",\"error\":{\"exitStatus\":%d,\"httpStatus\":%ld,\"errorCode\":%ld,\"errorName\":",
                           service_cmd_exit_status(rc, res), res->http_status, res->error_code);
    e = e ? e : append_json_str(out, res->error_name);
    e = e ? e : buf_append_str(out, ",\"message\":");
    e = e ? e : append_json_str(out, res->message ? res->message : err_str(rc));
    return e ? e : buf_append_str(out, "}}\n");
}

int service_cmd_format_invoke_result(const struct service_cmd *cmd, int rc, const struct service_client_result *res,
                                     struct buf *out)
{
    if (cmd->json)
        return format_invoke_json(cmd, rc, res, out);
    if (rc || res->kind != SERVICE_CLIENT_ANSWERED)
        return ERR_OK; /* the error line goes to stderr */
    return buf_printf(out, "Response status: %d, payload:\n\t%s\n", res->status, res->payload);
}

/* ---- identities ---- */

/* The registry object without authentication.symmetricKey, compact JSON appended to out. */
static int append_keyless_json(const struct service_client_identity *id, struct buf *out)
{
    json_t *obj = id->json ? json_loads(id->json, 0, NULL) : NULL;
    if (!obj)
        return ERR_MALFORMED;
    json_object_del(json_object_get(obj, "authentication"), "symmetricKey");
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    int rc = text ? buf_append_str(out, text) : ERR_NOMEM;
    free(text);
    return rc;
}

int service_cmd_format_identity(const struct service_client_identity *id, int json, struct buf *out)
{
    if (json) {
        int rc = append_keyless_json(id, out);
        return rc ? rc : buf_append_byte(out, '\n');
    }
    int rc = buf_printf(out, "deviceId: %s\n", id->device_id);
    if (!rc && id->module_id)
        rc = buf_printf(out, "moduleId: %s\n", id->module_id);
    if (!rc && id->status)
        rc = buf_printf(out, "status: %s\n", id->status);
    if (!rc && id->connection_state)
        rc = buf_printf(out, "connectionState: %s\n", id->connection_state);
    if (!rc && id->etag)
        rc = buf_printf(out, "etag: %s\n", id->etag);
    return rc;
}

int service_cmd_format_list(const struct service_client_identity *ids, size_t n, int json, struct buf *out)
{
    int rc = json ? buf_append_byte(out, '[') : ERR_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        if (json) {
            rc = i ? buf_append_byte(out, ',') : ERR_OK;
            rc = rc ? rc : append_keyless_json(&ids[i], out);
            continue;
        }
        const char *id = ids[i].module_id ? ids[i].module_id : ids[i].device_id;
        rc = buf_printf(out, "%s\t%s\t%s\n", id, ids[i].status ? ids[i].status : "-",
                        ids[i].connection_state ? ids[i].connection_state : "-");
    }
    return rc || !json ? rc : buf_append_str(out, "]\n");
}

/* ---- jobs ---- */

void service_cmd_job_spec(const struct service_cmd *cmd, struct service_client_job_spec *out)
{
    memset(out, 0, sizeof *out);
    out->job_id = cmd->job_id;
    out->twin = cmd->verb == SERVICE_CMD_JOB_SCHEDULE_TWIN;
    out->query = cmd->query;
    out->start_time = cmd->start_time;
    out->max_execution_s = cmd->max_time_s;
    out->method_name = cmd->method;
    out->payload = cmd->payload;
    out->response_timeout_s = cmd->timeout_s;
    out->connect_timeout_s = cmd->connect_timeout_s;
    out->desired = cmd->desired;
    out->tags = cmd->tags;
}

static long stat_of(json_t *stats, const char *name)
{
    return (long)json_integer_value(json_object_get(stats, name));
}

int service_cmd_job_progress(const char *job_json, int *final, struct buf *out)
{
    json_t *j = json_loads(job_json ? job_json : "", 0, NULL);
    const char *status = json_string_value(json_object_get(j, "status"));
    if (!status) {
        json_decref(j);
        return ERR_MALFORMED;
    }
    *final = strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0;
    json_t *st = json_object_get(j, "deviceJobStatistics");
    const char *id = json_string_value(json_object_get(j, "jobId"));
    long ok = stat_of(st, "succeededCount"), failed = stat_of(st, "failedCount");
    int rc = buf_printf(out, "job %s: %s, %ld of %ld devices done (%ld succeeded, %ld failed)", id ? id : "?", status,
                        ok + failed, stat_of(st, "deviceCount"), ok, failed);
    json_decref(j);
    return rc;
}

int service_cmd_job_final_status(const char *job_json)
{
    json_t *j = json_loads(job_json ? job_json : "", 0, NULL);
    const char *status = json_string_value(json_object_get(j, "status"));
    int rc = status && strcmp(status, "completed") == 0 ? SERVICE_CMD_EXIT_OK : SERVICE_CMD_EXIT_HUB;
    json_decref(j);
    return rc;
}

/* ---- send output ---- */

int service_cmd_format_sent(const struct service_cmd *cmd, const char *message_id, struct buf *out)
{
    if (!cmd->json)
        return buf_printf(out, "Sent message %s to device %s\n", message_id, cmd->device_id);
    int e = buf_append_str(out, "{\"messageId\":");
    e = e ? e : append_json_str(out, message_id);
    e = e ? e : buf_append_str(out, ",\"deviceId\":");
    e = e ? e : append_json_str(out, cmd->device_id);
    return e ? e : buf_append_str(out, "}\n");
}

int service_cmd_format_feedback(const struct service_cmd *cmd, const char *record_json, struct buf *out)
{
    if (cmd->json)
        return buf_printf(out, "%s\n", record_json);
    json_t *r = json_loads(record_json, 0, NULL);
    if (!json_is_object(r)) {
        json_decref(r);
        return ERR_MALFORMED;
    }
    const char *status = json_string_value(json_object_get(r, "statusCode"));
    const char *mid = json_string_value(json_object_get(r, "originalMessageId"));
    const char *dev = json_string_value(json_object_get(r, "deviceId"));
    const char *when = json_string_value(json_object_get(r, "enqueuedTimeUtc"));
    int rc = buf_printf(out, "Feedback: %s for message %s (device %s, %s)\n", status ? status : "?", mid ? mid : "?",
                        dev ? dev : "?", when ? when : "?");
    json_decref(r);
    return rc;
}
