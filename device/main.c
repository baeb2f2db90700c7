/* main.c -- iothub-device: the tutorial's simulated device that answers direct methods. */
#include <stdio.h>

int main(void)
{
    printf("usage: iothub-device --connection-string CS [options]\n(under construction)\n");
    return 0;
}
