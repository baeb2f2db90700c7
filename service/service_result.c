/* service_result.c -- cleanup of what the service client's calls return (see service_result.h). */
#include "service_result.h"

#include <stdlib.h>
#include <string.h>

void service_client_result_cleanup(struct service_client_result *r)
{
    if (!r)
        return;
    free(r->payload);
    free(r->error_name);
    free(r->message);
    memset(r, 0, sizeof *r);
}

void service_client_identity_cleanup(struct service_client_identity *id)
{
    if (!id)
        return;
    free(id->device_id);
    free(id->module_id);
    free(id->primary_key);
    free(id->secondary_key);
    free(id->status);
    free(id->etag);
    free(id->connection_state);
    free(id->json);
    memset(id, 0, sizeof *id);
}

void service_client_identity_list_free(struct service_client_identity *ids, size_t n)
{
    for (size_t i = 0; ids && i < n; i++)
        service_client_identity_cleanup(&ids[i]);
    free(ids);
}
