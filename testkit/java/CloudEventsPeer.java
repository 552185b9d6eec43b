// A Java service that speaks CloudEvents over Kafka with the CloudEvents
// Java SDK's Kafka binding (binary mode), as the gateway's peer:
//
//   java -cp <classpath> CloudEventsPeer.java produce BOOTSTRAP TOPIC KEY...
//     writes one CloudEvent per key (id "java-KEY", JSON data {"key": KEY},
//     subject "subject-KEY", extension origin=java) and prints, per event,
//     "KEY<TAB>PARTITION<TAB>TIME";
//   java -cp <classpath> CloudEventsPeer.java consume BOOTSTRAP TOPIC COUNT
//     reads COUNT records from the beginning of every partition as
//     CloudEvents and prints, per event, one line of tab-separated
//     id, type, source, time, datacontenttype and data.

import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.kafka.CloudEventDeserializer;
import io.cloudevents.kafka.CloudEventSerializer;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class CloudEventsPeer {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "produce" -> produce(args[1], args[2], List.of(args).subList(3, args.length));
            case "consume" -> consume(args[1], args[2], Integer.parseInt(args[3]));
            default -> throw new IllegalArgumentException("produce or consume, not " + args[0]);
        }
    }

    static void produce(String bootstrap, String topic, List<String> keys) throws Exception {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, CloudEventSerializer.class.getName());
        try (KafkaProducer<String, CloudEvent> producer = new KafkaProducer<>(config)) {
            for (String key : keys) {
                OffsetDateTime time = OffsetDateTime.now(ZoneOffset.UTC).truncatedTo(ChronoUnit.MILLIS);
                CloudEvent event = CloudEventBuilder.v1()
                        .withId("java-" + key)
                        .withType("peer.produced")
                        .withSource(URI.create("/java-peer"))
                        .withSubject("subject-" + key)
                        .withTime(time)
                        .withExtension("origin", "java")
                        .withDataContentType("application/json")
                        .withData(("{\"key\":\"" + key + "\"}").getBytes(StandardCharsets.UTF_8))
                        .build();
                RecordMetadata stored = producer.send(new ProducerRecord<>(topic, key, event)).get();
                System.out.println(key + "\t" + stored.partition() + "\t" + rfc3339(time));
            }
        }
    }

    /** A time as RFC 3339 writes it, seconds always included. */
    static String rfc3339(OffsetDateTime time) {
        return DateTimeFormatter.ISO_OFFSET_DATE_TIME.format(time);
    }

    static void consume(String bootstrap, String topic, int count) {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, CloudEventDeserializer.class.getName());
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        try (KafkaConsumer<String, CloudEvent> consumer = new KafkaConsumer<>(config)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo partition : consumer.partitionsFor(topic)) {
                partitions.add(new TopicPartition(topic, partition.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            int read = 0;
            long until = System.currentTimeMillis() + 30_000;
            while (read < count && System.currentTimeMillis() < until) {
                for (ConsumerRecord<String, CloudEvent> record : consumer.poll(Duration.ofMillis(200))) {
                    CloudEvent event = record.value();
                    byte[] data = event.getData() == null ? new byte[0] : event.getData().toBytes();
                    System.out.println(String.join("\t",
                            event.getId(),
                            event.getType(),
                            event.getSource().toString(),
                            event.getTime() == null ? "" : rfc3339(event.getTime()),
                            String.valueOf(event.getDataContentType()),
                            new String(data, StandardCharsets.UTF_8)));
                    read++;
                }
            }
            if (read < count) {
                throw new IllegalStateException("read " + read + " of " + count + " events");
            }
        }
    }
}
