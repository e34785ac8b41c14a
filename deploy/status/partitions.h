/*
 * partitions.h — `tally partitions`: which broker leads each partition of the
 * Tally topic, its replicas and its in-sync replicas, from the cluster's
 * metadata (librdkafka, with the configuration's brokers and security
 * settings). deploy/cluster prints it in `status` and reads the leader of
 * partition 0 from it for `kill kafka-leader`.
 *
 * Output, one line per partition, in partition order:
 *   partition 0 leader 2 replicas 2,3,1 isr 2,3
 * (leader -1: the partition has no leader at the moment).
 * Exit status: 0 printed; 1 the cluster did not answer or the topic is
 * unknown (the reason on stderr); 2 a usage or configuration error.
 */
#ifndef TALLY_PARTITIONS_H
#define TALLY_PARTITIONS_H

/* argv[1] is "partitions". */
int partitions_main(int argc, char **argv);

#endif
