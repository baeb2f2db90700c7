/* service_client.h -- IoT Hub service client on libcurl (under construction). */
#ifndef IOTHUB_SERVICE_CLIENT_H
#define IOTHUB_SERVICE_CLIENT_H
const char *service_client_version(void);
#endif
