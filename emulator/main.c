/* main.c -- iothub-emulator: a local Azure IoT Hub (MQTT device side, HTTPS service side). */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("usage: iothub-emulator [options]\n(under construction)\n");
    return 0;
}
