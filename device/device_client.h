/* device_client.h -- IoT Hub device client on libmosquitto (under construction). */
#ifndef IOTHUB_DEVICE_CLIENT_H
#define IOTHUB_DEVICE_CLIENT_H
const char *device_client_version(void);
#endif
