#include "ftvm.h"
#include <stdio.h>

static unsigned long long bytes; /* state: lives in linear memory, checkpointed */

void ftvm_guest_init(void) { ftvm_timer_after_ms(1000, 1); }
void ftvm_guest_open(int32_t conn) { ftvm_send(conn, "hello\n", 6); }
void ftvm_guest_data(int32_t conn, const uint8_t *data, size_t len) {
  bytes += len;
  ftvm_send(conn, data, len);
}
void ftvm_guest_close(int32_t conn) {}
void ftvm_guest_timer(int32_t tag) {
  printf("echoed %llu bytes so far\n", bytes); /* stdout goes to the ftvm log */
  ftvm_timer_after_ms(1000, 1);
}
