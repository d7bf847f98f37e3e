package io.github.cjo.example;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import org.apache.avro.Schema;

/** The schema files of the project's schemas/ folder: {@code <name>.avsc} is what a writer
 *  uses today, {@code released/<name>.v<N>.avsc} the versions that may still be on a topic. */
final class Schemas {
    private final Path dir;

    Schemas(Path dir) {
        this.dir = dir;
    }

    Schema current(String name) throws IOException {
        return parse(dir.resolve(name + ".avsc"));
    }

    /** Every released version of a schema, oldest first. */
    List<Schema> released(String name) throws IOException {
        List<Path> files = new ArrayList<>();
        try (Stream<Path> all = Files.list(dir.resolve("released"))) {
            all.filter(p -> p.getFileName().toString().matches(name.replace(".", "\\.") + "\\.v\\d+\\.avsc"))
               .forEach(files::add);
        }
        files.sort((a, b) -> Integer.compare(version(a), version(b)));
        List<Schema> out = new ArrayList<>();
        for (Path file : files) {
            out.add(parse(file));
        }
        return out;
    }

    private static int version(Path file) {
        String name = file.getFileName().toString();
        return Integer.parseInt(name.substring(name.lastIndexOf(".v") + 2, name.length() - ".avsc".length()));
    }

    private static Schema parse(Path file) throws IOException {
        return new Schema.Parser().parse(file.toFile());  // a parser per file: each defines cjo.*
    }
}
