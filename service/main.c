/* main.c -- iothub-service: invoke direct methods, manage device identities, make SAS tokens. */
#include <stdio.h>

int main(void)
{
    printf("usage: iothub-service COMMAND [options]\n(under construction)\n");
    return 0;
}
