// The reference Java client as a peer of the gateway: produces one record
// per key given, with Kafka's default partitioner, and prints where each
// was stored, one "key<TAB>partition" line per key, in order.
//
// java -cp <Kafka's classpath> ProduceKeys.java BOOTSTRAP TOPIC KEY...

import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class ProduceKeys {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config)) {
            for (int i = 2; i < args.length; i++) {
                String key = args[i];
                RecordMetadata stored =
                        producer.send(new ProducerRecord<>(args[1], key, "{\"from\":\"java\"}")).get();
                System.out.println(key + "\t" + stored.partition());
            }
        }
    }
}
