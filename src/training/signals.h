/* signals: the stop-on-request flag of the training loop (internal to src/training). The handlers are
 * installed by bf_train_install_signal_handlers (train.h). */
#ifndef BUDGETFORMER_TRAINING_SIGNALS_H
#define BUDGETFORMER_TRAINING_SIGNALS_H

/* The first stop signal received (0 = none); also the watchdog's "stop requested" query. */
int bf_train_stop_signal(void);
/* "SIGTERM", ..., for messages. */
const char *bf_train_signal_name(int sig);

#endif
