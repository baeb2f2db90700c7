/* service_client.c -- IoT Hub service client on libcurl (under construction). */
#include "service_client.h"
const char *service_client_version(void) { return "0.1.0"; }
