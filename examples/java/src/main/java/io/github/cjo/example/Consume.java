package io.github.cjo.example;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/** Reads the app's segment changes, activations, journey transitions and identity merges from
 *  the beginning to their end as of the start, and prints each record once: a copy whose id was
 *  seen already (a redelivery after a worker's crash) is dropped. A real consumer subscribes
 *  with a group id, commits its offsets and keeps the ids it has seen in a store of its own. */
final class Consume {
    private Consume() {
    }

    /** Topic suffix, schema file, id field. */
    private static final String[][] OUTPUTS = {
        {"segment-changes", "segment_change", "change_id"},
        {"activations", "activation", "activation_id"},
        {"journey-transitions", "journey_transition", "transition_id"},
        {"identity-merges", "identity_merge", "merge_id"},
    };

    static int run(String bootstrap, String app, Schemas schemas) throws Exception {
        Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new HashMap<>();
        Map<String, String> idFields = new HashMap<>();
        for (String[] output : OUTPUTS) {
            Schema reader = schemas.current(output[1]);
            // Knows the reader schema itself; a record written with a released version (another
            // fingerprint) is resolved against the reader schema.
            BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), reader);
            for (Schema released : schemas.released(output[1])) {
                decoder.addSchema(released);
            }
            decoders.put(app + "." + output[0], decoder);
            idFields.put(app + "." + output[0], output[2]);
        }

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Set<String> seen = new HashSet<>();
        int printed = 0, duplicates = 0, undecodable = 0;
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (String topic : decoders.keySet()) {
                for (PartitionInfo p : consumer.partitionsFor(topic)) {
                    partitions.add(new TopicPartition(topic, p.partition()));
                }
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> ends = consumer.endOffsets(partitions);
            while (partitions.stream().anyMatch(tp -> consumer.position(tp) < ends.get(tp))) {
                for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    GenericRecord value;
                    try {
                        value = decoders.get(r.topic()).decode(r.value());
                    } catch (AvroRuntimeException | java.io.IOException e) {
                        System.err.printf("cannot decode %s[%d]@%d: %s%n", r.topic(), r.partition(), r.offset(), e);
                        undecodable++;
                        continue;
                    }
                    String id = value.get(idFields.get(r.topic())).toString();
                    if (!seen.add(r.topic() + "\u0000" + id)) {
                        duplicates++;
                        continue;
                    }
                    System.out.printf("%s\t%d\t%d\t%s\t%s%n", r.topic(), r.partition(), r.offset(), r.key(), value);
                    printed++;
                }
            }
        }
        System.err.printf("%d records, %d duplicates dropped, %d undecodable%n", printed, duplicates, undecodable);
        return undecodable == 0 ? 0 : 1;
    }
}
