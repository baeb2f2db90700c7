/* device_client.c -- IoT Hub device client on libmosquitto (under construction). */
#include "device_client.h"
const char *device_client_version(void) { return "0.1.0"; }
