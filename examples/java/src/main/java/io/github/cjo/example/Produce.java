package io.github.cjo.example;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.Future;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** A visitor views pages and adds to cart, logs in (identify: the visitor becomes the member),
 *  and the member buys from the back end: six events to {@code <app>.events}, each keyed by
 *  its visitor id, else its user id, in Avro's single-object encoding. */
final class Produce {
    private Produce() {
    }

    static void run(String bootstrap, String app, Schemas schemas, String suffix) throws Exception {
        Schema schema = schemas.current("event");
        // C3 01, the schema's CRC-64-AVRO fingerprint, the Avro body: what the worker reads.
        BinaryMessageEncoder<GenericRecord> encoder = new BinaryMessageEncoder<>(GenericData.get(), schema);
        String visitor = "v-java-" + suffix;
        String member = "u-java-" + suffix;
        String request = "r-java-" + suffix;
        long t = System.currentTimeMillis() - 60_000;  // the events' own times: a minute ago on
        List<GenericRecord> events = List.of(
            event(schema, "view", visitor, null, t, request, Map.of("path", "/")),
            event(schema, "view", visitor, null, t + 1_000, request, Map.of("path", "/items/1")),
            event(schema, "add_to_cart", visitor, null, t + 2_000, request, Map.of("item", "1", "price", 4800L)),
            event(schema, "view", visitor, null, t + 3_000, request, Map.of("path", "/cart")),
            event(schema, "identify", visitor, member, t + 4_000, request, Map.of()),
            event(schema, "purchase", null, member, t + 5_000, null, Map.of("item", "1", "amount", 4800L)));

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");  // idempotent by default: no reordering on retries
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        // No partitioner set: Java's default hashes a key with murmur2, as the worker expects.
        String topic = app + ".events";
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(props)) {
            for (GenericRecord e : events) {
                Object v = e.get("visitor_id");
                String key = (v != null ? v : e.get("user_id")).toString();  // visitor id, else user id
                ByteArrayOutputStream value = new ByteArrayOutputStream();
                encoder.encode(e, value);
                sent.add(producer.send(new ProducerRecord<>(topic, key, value.toByteArray())));
            }
            producer.flush();
            for (int i = 0; i < events.size(); i++) {
                RecordMetadata m = sent.get(i).get();
                GenericRecord e = events.get(i);
                System.out.printf("sent\t%s\t%d\t%d\t%s\t%s%n", m.topic(), m.partition(), m.offset(),
                                  e.get("name"), e.get("event_id"));
            }
        }
    }

    private static GenericRecord event(Schema schema, String name, String visitor, String user, long time,
                                       String request, Map<String, Object> values) {
        GenericRecord e = new GenericData.Record(schema);
        e.put("event_id", UUID.randomUUID().toString());  // unique per event: your own id
        e.put("name", name);
        e.put("visitor_id", visitor);
        e.put("user_id", user);
        e.put("time", time);
        e.put("request_id", request);
        e.put("values", values);
        return e;
    }
}
