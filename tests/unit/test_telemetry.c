/* test_telemetry.c -- unit tests for emulator/hub/telemetry (messages into the event log, and its JSON view). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "err.h"
#include "telemetry.h"

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void keeps_messages_with_properties(void **state)
{
    struct telemetry *t = telemetry_new(10, 1024);
    const char *body = "{\"t\":21.5}";
    assert_int_equal(telemetry_add(t, "dev1", NULL, "devices/dev1/messages/events/a=1&b=x%20y&flag&%24.ct=json",
                                   (const uint8_t *)body, strlen(body), 0),
                     ERR_OK);
    const uint8_t bin[] = {0xff, 0x00, 0x01};
    assert_int_equal(telemetry_add(t, "dev1", "mod1", "devices/dev1/modules/mod1/messages/events/", bin, 3, 60), ERR_OK);
    json_t *all = telemetry_json(t, NULL, 0);
    assert_int_equal(json_array_size(all), 2);
    json_t *m0 = json_array_get(all, 0);
    assert_string_equal(str(m0, "deviceId"), "dev1");
    assert_null(json_object_get(m0, "moduleId"));
    assert_string_equal(str(m0, "body"), body);
    assert_string_equal(str(m0, "enqueuedTimeUtc"), "1970-01-01T00:00:00.000Z");
    json_t *props = json_object_get(m0, "properties");
    assert_string_equal(str(props, "a"), "1");
    assert_string_equal(str(props, "b"), "x y");
    assert_true(json_is_null(json_object_get(props, "flag")));
    assert_string_equal(str(props, "$.ct"), "json");
    json_t *m1 = json_array_get(all, 1);
    assert_string_equal(str(m1, "moduleId"), "mod1");
    assert_string_equal(str(m1, "bodyBase64"), "/wAB");
    assert_int_equal(json_object_size(json_object_get(m1, "properties")), 0);
    json_decref(all);
    telemetry_free(t);
}

static void evicts_oldest_by_count_and_bytes(void **state)
{
    /* Each one-byte event counts 1 + 256 bytes (the per-event overhead). */
    struct telemetry *t = telemetry_new(3, 1u << 20);
    for (int i = 0; i < 5; i++) {
        char b[2] = {(char)('0' + i), 0};
        assert_int_equal(telemetry_add(t, i % 2 ? "odd" : "even", NULL, "devices/x/messages/events/",
                                       (const uint8_t *)b, 1, i),
                         ERR_OK);
    }
    json_t *all = telemetry_json(t, NULL, 0);
    assert_int_equal(json_array_size(all), 3);
    assert_string_equal(str(json_array_get(all, 0), "body"), "2");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 0), "sequenceNumber")), 2);
    json_decref(all);
    json_t *even = telemetry_json(t, "even", 0);
    assert_int_equal(json_array_size(even), 2);
    json_decref(even);
    json_t *last = telemetry_json(t, NULL, 1);
    assert_string_equal(str(json_array_get(last, 0), "body"), "4");
    json_decref(last);
    telemetry_set_list_limit(t, 2);
    all = telemetry_json(t, NULL, 0);
    assert_int_equal(json_array_size(all), 2);
    assert_string_equal(str(json_array_get(all, 0), "body"), "3");
    json_decref(all);
    telemetry_free(t);

    /* By bytes: room for three one-byte events; an 8-byte one pushes two out. */
    t = telemetry_new(100, 3 * 257);
    for (int i = 0; i < 5; i++)
        assert_int_equal(telemetry_add(t, "d", NULL, "t", (const uint8_t *)"x", 1, i), ERR_OK);
    all = telemetry_json(t, NULL, 0);
    assert_int_equal(json_array_size(all), 3);
    json_decref(all);
    assert_int_equal(telemetry_add(t, "d", NULL, "t", (const uint8_t *)"12345678", 8, 9), ERR_OK);
    all = telemetry_json(t, NULL, 0);
    assert_int_equal(json_array_size(all), 2);
    assert_string_equal(str(json_array_get(all, 1), "body"), "12345678");
    json_decref(all);
    /* Larger than the byte cap: counted, not kept. */
    uint8_t huge[1024] = {0};
    assert_int_equal(telemetry_add(t, "huge", NULL, "t", huge, sizeof huge, 9), ERR_OK);
    assert_int_equal(telemetry_total(t), 7);
    telemetry_clear(t);
    all = telemetry_json(t, NULL, 0);
    assert_int_equal(json_array_size(all), 0);
    json_decref(all);
    assert_int_equal(telemetry_total(t), 7);
    telemetry_free(t);
}

static void zero_capacity_only_counts(void **state)
{
    struct telemetry *t = telemetry_new(0, 100);
    assert_int_equal(telemetry_add(t, "d", NULL, "t", (const uint8_t *)"x", 1, 0), ERR_OK);
    assert_int_equal(telemetry_total(t), 1);
    json_t *all = telemetry_json(t, NULL, 0);
    assert_int_equal(json_array_size(all), 0);
    json_decref(all);
    telemetry_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keeps_messages_with_properties),
        cmocka_unit_test(evicts_oldest_by_count_and_bytes),
        cmocka_unit_test(zero_capacity_only_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
