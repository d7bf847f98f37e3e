package io.github.cjo.example;

import java.nio.file.Path;

/** {@code produce} sends a few events to a cjo app's input topic; {@code consume} prints what
 *  the app's workers made of everything on its output topics. */
public final class Main {
    private static final String USAGE = String.join("\n",
        "usage: java -jar target/cjo-java-example.jar produce BOOTSTRAP APP [SCHEMAS_DIR [ID_SUFFIX]]",
        "       java -jar target/cjo-java-example.jar consume BOOTSTRAP APP [SCHEMAS_DIR]",
        "BOOTSTRAP is host:port of a broker, APP the app id (topics <APP>.events, ...),",
        "SCHEMAS_DIR the project's schemas/ folder (default ../../schemas).");

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println(USAGE);
            System.exit(2);
        }
        Schemas schemas = new Schemas(Path.of(args.length > 3 ? args[3] : "../../schemas"));
        switch (args[0]) {
            case "produce" -> Produce.run(args[1], args[2], schemas,
                                          args.length > 4 ? args[4] : Long.toString(System.currentTimeMillis()));
            case "consume" -> System.exit(Consume.run(args[1], args[2], schemas));
            default -> {
                System.err.println(USAGE);
                System.exit(2);
            }
        }
    }
}
