/* cli: one entry point per subcommand; main.c dispatches on argv[1]. Each returns the process exit
 * status (0 success, 1 runtime failure, 2 usage error). argv[0] is the subcommand name. */
#ifndef BUDGETFORMER_CLI_H
#define BUDGETFORMER_CLI_H

int bf_cmd_prepare(int argc, char **argv);
int bf_cmd_train(int argc, char **argv);
int bf_cmd_eval(int argc, char **argv);
int bf_cmd_heads(int argc, char **argv);
int bf_cmd_inspect(int argc, char **argv);
int bf_cmd_bench(int argc, char **argv);
int bf_cmd_predict(int argc, char **argv);

#endif
