/* main.c -- iothub-service: invoke direct methods (the tutorial's CallMethodOnDevice by default), manage
 * device and module identities, print connection strings, make SAS tokens, send cloud-to-device messages
 * (AMQP, service_amqp.c), schedule and follow jobs. Parsing, exit statuses and
 * output text live in service_cmd.c; the REST work in service_client.c. Every error is one line on stderr. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "sas.h"
#include "service_client.h"
#include "service_cmd.h"

#define PROGRAM "iothub-service"

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Writes b to f and empties it. */
static void emit(FILE *f, struct buf *b)
{
    if (b->len)
        fwrite(b->data, 1, b->len, f);
    fflush(f);
    buf_cleanup(b);
}

static int usage_error(const char *why)
{
    fprintf(stderr, PROGRAM ": %s\n", why);
    return SERVICE_CMD_EXIT_USAGE;
}

/* Reports a failed operation (one stderr line) and returns its exit status. */
static int report(int rc, const struct service_client_result *res)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    if (service_cmd_format_error(rc, res, &b) == ERR_OK) {
        fprintf(stderr, PROGRAM ": %.*s\n", (int)b.len, (const char *)b.data);
    } else {
        fprintf(stderr, PROGRAM ": %s\n", err_str(rc ? rc : ERR_NOMEM));
    }
    buf_cleanup(&b);
    return service_cmd_exit_status(rc, res);
}

static struct service_client *make_client(const struct service_cmd *cmd, int *status)
{
    char err[512];
    const char *cs = cmd->connection_string ? cmd->connection_string : env("IOTHUB_CONNECTION_STRING");
    struct service_client_options o = {
        /* An empty --ca-file means the system store, even when IOTHUB_CA_FILE is set. */
        .ca_file = cmd->ca_file ? (*cmd->ca_file ? cmd->ca_file : NULL) : env("IOTHUB_CA_FILE"),
        .base_url = cmd->url ? cmd->url : env("IOTHUB_SERVICE_URL"),
    };
    *status = SERVICE_CMD_EXIT_USAGE;
    if (!cs) {
        usage_error("no service connection string: use --connection-string or set IOTHUB_CONNECTION_STRING");
        return NULL;
    }
    if (o.ca_file && access(o.ca_file, R_OK) != 0) {
        fprintf(stderr, PROGRAM ": cannot read the CA file %s\n", o.ca_file);
        return NULL;
    }
    struct service_client *c = service_client_new(cs, &o, err, sizeof err);
    if (!c)
        usage_error(err);
    return c;
}

static int cmd_invoke(struct service_client *c, const struct service_cmd *cmd)
{
    struct service_client_method m = {cmd->device_id, cmd->module_id, cmd->method,
                                      strcmp(cmd->payload, "null") == 0 ? NULL : cmd->payload,
                                      cmd->timeout_s, cmd->connect_timeout_s};
    struct service_client_result res;
    struct buf out;
    buf_init(&out, 64u * 1024 * 1024);
    if (service_cmd_format_invoke_intro(cmd, &out) == ERR_OK)
        emit(stdout, &out);
    int rc = service_client_invoke(c, &m, &res);
    int status = service_cmd_exit_status(rc, &res);
    if (service_cmd_format_invoke_result(cmd, rc, &res, &out) == ERR_OK)
        emit(stdout, &out);
    if (status != SERVICE_CMD_EXIT_OK)
        report(rc, &res);
    buf_cleanup(&out);
    service_client_result_cleanup(&res);
    return status;
}

/* create and get: both print the identity (without keys). */
static int cmd_identity(struct service_client *c, const struct service_cmd *cmd)
{
    struct service_client_identity id;
    struct service_client_result res;
    struct service_client_identity_spec spec = {cmd->primary_key, cmd->secondary_key, cmd->disabled};
    int rc = cmd->verb == SERVICE_CMD_CREATE
                 ? service_client_identity_create(c, cmd->device_id, cmd->module_id, &spec, &id, &res)
                 : service_client_identity_get(c, cmd->device_id, cmd->module_id, &id, &res);
    int status = service_cmd_exit_status(rc, &res);
    if (status == SERVICE_CMD_EXIT_OK) {
        struct buf out;
        buf_init(&out, 64u * 1024 * 1024);
        if (service_cmd_format_identity(&id, cmd->json, &out) == ERR_OK)
            emit(stdout, &out);
        buf_cleanup(&out);
        service_client_identity_cleanup(&id);
    } else {
        report(rc, &res);
    }
    service_client_result_cleanup(&res);
    return status;
}

static int cmd_list(struct service_client *c, const struct service_cmd *cmd)
{
    struct service_client_identity *ids = NULL;
    size_t n = 0;
    struct service_client_result res;
    int rc = service_client_identity_list(c, cmd->is_module ? cmd->device_id : NULL, cmd->top, &ids, &n, &res);
    int status = service_cmd_exit_status(rc, &res);
    if (status == SERVICE_CMD_EXIT_OK) {
        struct buf out;
        buf_init(&out, 256u * 1024 * 1024);
        if (service_cmd_format_list(ids, n, cmd->json, &out) == ERR_OK)
            emit(stdout, &out);
        buf_cleanup(&out);
    } else {
        report(rc, &res);
    }
    service_client_identity_list_free(ids, n);
    service_client_result_cleanup(&res);
    return status;
}

static int cmd_delete(struct service_client *c, const struct service_cmd *cmd)
{
    struct service_client_result res;
    int rc = service_client_identity_delete(c, cmd->device_id, cmd->module_id, &res);
    int status = service_cmd_exit_status(rc, &res);
    if (status != SERVICE_CMD_EXIT_OK)
        report(rc, &res);
    else if (cmd->json)
        printf("{\"deleted\":true}\n");
    else if (cmd->module_id)
        printf("Deleted module %s of device %s\n", cmd->module_id, cmd->device_id);
    else
        printf("Deleted device %s\n", cmd->device_id);
    service_client_result_cleanup(&res);
    return status;
}

/* Prints text (a connection string or a token), as {"<field>":"text"} with --json. */
static void print_secret(const char *field, const char *text, int json)
{
    json_t *obj = json ? json_pack("{s:s}", field, text) : NULL;
    char *dumped = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    printf("%s\n", dumped ? dumped : text);
    free(dumped);
    json_decref(obj);
}

/* connection-string and sas --device: both need the identity's primary key from the registry. */
static int cmd_from_key(struct service_client *c, const struct service_cmd *cmd)
{
    struct service_client_identity id;
    struct service_client_result res;
    char *text = NULL, *uri = NULL;
    int rc = service_client_identity_get(c, cmd->device_id, cmd->module_id, &id, &res);
    int status = service_cmd_exit_status(rc, &res);
    if (status != SERVICE_CMD_EXIT_OK) {
        report(rc, &res);
        goto out;
    }
    if (cmd->verb == SERVICE_CMD_CONNECTION_STRING) {
        text = service_client_connection_string(c, &id);
    } else {
        uri = sas_resource_uri(service_client_host(c), cmd->device_id, cmd->module_id);
        if (uri && id.primary_key && service_client_sas(uri, id.primary_key, NULL, cmd->ttl_s, &text))
            text = NULL;
    }
    if (text) {
        print_secret(cmd->verb == SERVICE_CMD_SAS ? "sas" : "connectionString", text, cmd->json);
    } else {
        fprintf(stderr, PROGRAM ": %s has no usable symmetric key\n", cmd->module_id ? "the module" : "the device");
        status = SERVICE_CMD_EXIT_HUB;
    }
    service_client_identity_cleanup(&id);
out:
    free(text);
    free(uri);
    service_client_result_cleanup(&res);
    return status;
}

static int cmd_sas_key(const struct service_cmd *cmd)
{
    char *token = NULL;
    int rc = service_client_sas(cmd->resource, cmd->key, cmd->key_name, cmd->ttl_s, &token);
    if (rc == ERR_INVALID)
        return usage_error("cannot sign: the key is not valid base64 (or the resource is empty)");
    if (rc) {
        fprintf(stderr, PROGRAM ": %s\n", err_str(rc));
        return SERVICE_CMD_EXIT_INTERNAL;
    }
    print_secret("sas", token, cmd->json);
    free(token);
    return SERVICE_CMD_EXIT_OK;
}

/* Prints JSON text the hub answered (indented, compact with --json). */
static void print_json(const char *text, int json)
{
    struct buf out;
    buf_init(&out, 256u * 1024 * 1024);
    if (service_cmd_format_json(text, json, &out) == ERR_OK)
        emit(stdout, &out);
    else
        printf("%s\n", text);
    buf_cleanup(&out);
}

static int cmd_twin(struct service_client *c, const struct service_cmd *cmd)
{
    struct service_client_result res;
    char *twin = NULL;
    int rc = cmd->verb == SERVICE_CMD_TWIN_GET
                 ? service_client_twin_get(c, cmd->device_id, cmd->module_id, &twin, &res)
                 : service_client_twin_update(c, cmd->device_id, cmd->module_id, cmd->patch,
                                              cmd->verb == SERVICE_CMD_TWIN_REPLACE, cmd->etag, &twin, &res);
    int status = service_cmd_exit_status(rc, &res);
    if (status == SERVICE_CMD_EXIT_OK)
        print_json(twin, cmd->json);
    else
        report(rc, &res);
    free(twin);
    service_client_result_cleanup(&res);
    return status;
}

/* One page of a paged read: the rows (a JSON array) and the next continuation, or NULL on the last page. */
typedef int (*page_fn)(struct service_client *c, const struct service_cmd *cmd, const char *cont, char **rows,
                       char **next, struct service_client_result *res);

/* Reads page after page (as long as the hub sends a continuation) and prints all rows as one array: `query`
 * and `job list`. */
static int print_all_pages(struct service_client *c, const struct service_cmd *cmd, page_fn fetch, const char *what)
{
    json_t *all = json_array();
    char *cont = NULL;
    int status = all ? SERVICE_CMD_EXIT_OK : SERVICE_CMD_EXIT_INTERNAL;
    for (int page = 0; status == SERVICE_CMD_EXIT_OK; page++) {
        struct service_client_result res;
        char *rows = NULL, *next = NULL;
        int rc = fetch(c, cmd, cont, &rows, &next, &res);
        status = service_cmd_exit_status(rc, &res);
        if (status != SERVICE_CMD_EXIT_OK)
            report(rc, &res);
        json_t *j = rows ? json_loads(rows, 0, NULL) : NULL;
        size_t n_rows = json_array_size(j); /* before the decref frees j */
        if (j && json_array_extend(all, j) != 0) {
            fprintf(stderr, PROGRAM ": %s\n", err_str(ERR_NOMEM));
            status = SERVICE_CMD_EXIT_INTERNAL;
        }
        json_decref(j);
        log_debug("%s page %d: %zu rows, %s", what, page + 1, n_rows, next ? "more follow" : "last page");
        free(rows);
        free(cont);
        cont = next;
        service_client_result_cleanup(&res);
        if (!cont)
            break;
    }
    free(cont);
    if (status == SERVICE_CMD_EXIT_OK) {
        char *text = json_dumps(all, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text) {
            print_json(text, cmd->json);
        } else {
            fprintf(stderr, PROGRAM ": %s\n", err_str(ERR_NOMEM));
            status = SERVICE_CMD_EXIT_INTERNAL;
        }
        free(text);
    }
    json_decref(all);
    return status;
}

static int query_page(struct service_client *c, const struct service_cmd *cmd, const char *cont, char **rows,
                      char **next, struct service_client_result *res)
{
    return service_client_query(c, cmd->query, cmd->page_size, cont, rows, next, res);
}

static int cmd_query(struct service_client *c, const struct service_cmd *cmd)
{
    return print_all_pages(c, cmd, query_page, "query");
}

/* job get --wait: polls every SERVICE_CMD_JOB_POLL_S until a final status; a progress line on stderr per
 * change. On return *job is the last job JSON the hub sent. */
static int wait_job(struct service_client *c, const struct service_cmd *cmd, char **job)
{
    char last[1024] = "";
    for (;;) {
        struct service_client_result res;
        int final = 0;
        struct buf line;
        buf_init(&line, sizeof last - 1);
        if (service_cmd_job_progress(*job, &final, &line) == ERR_OK && buf_append_byte(&line, 0) == ERR_OK &&
            strcmp((const char *)line.data, last) != 0) {
            snprintf(last, sizeof last, "%s", (const char *)line.data);
            fprintf(stderr, "%s\n", last);
        }
        buf_cleanup(&line);
        if (final)
            return service_cmd_job_final_status(*job);
        sleep(SERVICE_CMD_JOB_POLL_S);
        free(*job);
        *job = NULL;
        int rc = service_client_job_get(c, cmd->job_id, job, &res);
        int status = service_cmd_exit_status(rc, &res);
        if (status != SERVICE_CMD_EXIT_OK)
            report(rc, &res);
        service_client_result_cleanup(&res);
        if (status != SERVICE_CMD_EXIT_OK)
            return status;
    }
}

/* job schedule-method|schedule-twin|get|cancel: each prints the job as the hub returned it. */
static int cmd_job(struct service_client *c, const struct service_cmd *cmd)
{
    struct service_client_result res;
    struct service_client_job_spec spec;
    char *job = NULL;
    int rc;
    if (cmd->verb == SERVICE_CMD_JOB_GET) {
        rc = service_client_job_get(c, cmd->job_id, &job, &res);
    } else if (cmd->verb == SERVICE_CMD_JOB_CANCEL) {
        rc = service_client_job_cancel(c, cmd->job_id, &job, &res);
    } else {
        service_cmd_job_spec(cmd, &spec);
        rc = service_client_job_schedule(c, &spec, &job, &res);
    }
    int status = service_cmd_exit_status(rc, &res);
    if (status != SERVICE_CMD_EXIT_OK)
        report(rc, &res);
    service_client_result_cleanup(&res);
    if (status == SERVICE_CMD_EXIT_OK && cmd->wait)
        status = wait_job(c, cmd, &job);
    if (job)
        print_json(job, cmd->json);
    free(job);
    return status;
}

/* job list: every page of GET /jobs/v2/query, printed as one array. */
static int job_page(struct service_client *c, const struct service_cmd *cmd, const char *cont, char **rows,
                    char **next, struct service_client_result *res)
{
    return service_client_job_query(c, cmd->job_type, cmd->job_status, cmd->page_size, cont, rows, next, res);
}

static int cmd_job_list(struct service_client *c, const struct service_cmd *cmd)
{
    return print_all_pages(c, cmd, job_page, "job list");
}

static void print_feedback(void *ctx, const char *record_json)
{
    const struct service_cmd *cmd = ctx;
    struct buf out;
    buf_init(&out, 1024 * 1024);
    if (service_cmd_format_feedback(cmd, record_json, &out) == ERR_OK)
        emit(stdout, &out);
    buf_cleanup(&out);
}

static void print_sent(void *ctx, const char *message_id)
{
    const struct service_cmd *cmd = ctx;
    struct buf out;
    buf_init(&out, 64 * 1024);
    if (service_cmd_format_sent(cmd, message_id, &out) == ERR_OK)
        emit(stdout, &out);
    buf_cleanup(&out);
}

static int cmd_send(struct service_client *c, const struct service_cmd *cmd)
{
    const char *keys[SERVICE_CMD_MAX_PROPS];
    for (size_t i = 0; i < cmd->n_props; i++)
        keys[i] = cmd->prop_keys[i];
    struct service_client_c2d m = {
        .device_id = cmd->device_id, .message_id = cmd->message_id, .ack = cmd->ack, .expiry_s = cmd->expiry_s,
        .keys = keys, .values = cmd->prop_values, .n_props = cmd->n_props, .body = cmd->message,
        .body_len = strlen(cmd->message), .wait_feedback = cmd->wait_feedback, .timeout_s = cmd->timeout_s,
        .amqp_url = cmd->amqp_url ? cmd->amqp_url : env("IOTHUB_SERVICE_AMQP_URL")};
    struct service_client_result res;
    int rc = service_client_send_c2d(c, &m, print_sent, print_feedback, (void *)cmd, NULL, 0, &res);
    int status = service_cmd_exit_status(rc, &res);
    if (status != SERVICE_CMD_EXIT_OK)
        report(rc, &res);
    service_client_result_cleanup(&res);
    return status;
}

static int dispatch(struct service_client *c, const struct service_cmd *cmd)
{
    switch (cmd->verb) {
    case SERVICE_CMD_INVOKE: return cmd_invoke(c, cmd);
    case SERVICE_CMD_CREATE:
    case SERVICE_CMD_GET: return cmd_identity(c, cmd);
    case SERVICE_CMD_LIST: return cmd_list(c, cmd);
    case SERVICE_CMD_DELETE: return cmd_delete(c, cmd);
    case SERVICE_CMD_CONNECTION_STRING:
    case SERVICE_CMD_SAS: return cmd_from_key(c, cmd);
    case SERVICE_CMD_TWIN_GET:
    case SERVICE_CMD_TWIN_UPDATE:
    case SERVICE_CMD_TWIN_REPLACE: return cmd_twin(c, cmd);
    case SERVICE_CMD_QUERY: return cmd_query(c, cmd);
    case SERVICE_CMD_SEND: return cmd_send(c, cmd);
    case SERVICE_CMD_JOB_SCHEDULE_METHOD:
    case SERVICE_CMD_JOB_SCHEDULE_TWIN:
    case SERVICE_CMD_JOB_GET:
    case SERVICE_CMD_JOB_CANCEL: return cmd_job(c, cmd);
    case SERVICE_CMD_JOB_LIST: return cmd_job_list(c, cmd);
    default: return SERVICE_CMD_EXIT_INTERNAL;
    }
}

int main(int argc, char **argv)
{
    struct service_cmd cmd;
    char err[512];
    if (service_cmd_parse(argc, argv, &cmd, err, sizeof err)) {
        fprintf(stderr, PROGRAM ": %s (see " PROGRAM " --help)\n", err);
        return SERVICE_CMD_EXIT_USAGE;
    }
    if (cmd.verb == SERVICE_CMD_HELP) {
        fputs(service_cmd_usage(), stdout);
        return SERVICE_CMD_EXIT_OK;
    }
    if (cmd.verb == SERVICE_CMD_VERSION) {
        printf(PROGRAM " %s\n", service_client_version());
        return SERVICE_CMD_EXIT_OK;
    }
    log_set_level(cmd.verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
    if (cmd.verb == SERVICE_CMD_SAS && cmd.resource)
        return cmd_sas_key(&cmd);
    int status;
    struct service_client *c = make_client(&cmd, &status);
    if (!c)
        return status;
    status = dispatch(c, &cmd);
    service_client_free(c);
    return status;
}
